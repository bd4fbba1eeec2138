/* SPDX-License-Identifier: BSD-2-Clause */

/*
 * ngx_http_api_key_module: the hash mode marker check.
 *
 * apikeyctl keeps, under the prefix, the hash {prefix}meta: "hash" (the
 * mode it hashes keys with: sha256 or hmac-sha256) and "check" (the hex
 * hash, in that mode and with that secret, of AK_MARKER_LABEL).  When the
 * commands connection is up, worker 0 reads both (two HGETs) and compares
 * them with api_key_hash: a mismatch means no key stored there can ever
 * verify here (every key is "unknown"), so it is logged once, as an error,
 * naming the prefix and what differs (never the secret; the check is a
 * hash of a fixed text).  No marker (nothing written by apikeyctl yet):
 * nothing to compare.  Reads only; the check never blocks a request.
 */


#include "ngx_http_api_key.h"


static void ngx_http_api_key_marker_check(void);
static void ngx_http_api_key_marker_reply(ngx_http_api_key_reply_t *reply,
    void *data);


static ngx_log_t   *ngx_http_api_key_marker_log;
static ngx_str_t    ngx_http_api_key_marker_mode;   /* ours */
static u_char       ngx_http_api_key_marker_hex[AK_HASH_HEX_LEN];
static u_char       ngx_http_api_key_marker_name[AK_REDIS_PREFIX_MAX + 8];
static size_t       ngx_http_api_key_marker_name_len;
static u_char       ngx_http_api_key_marker_got[16];   /* its "hash" */
static size_t       ngx_http_api_key_marker_got_len;
static ngx_uint_t   ngx_http_api_key_marker_state;  /* 0: to check,
                                                       1: checking,
                                                       2: done */


ngx_int_t
ngx_http_api_key_marker_init_worker(ngx_cycle_t *cycle,
    ngx_http_api_key_main_conf_t *amcf)
{
    char                            err[AK_ERR_LEN];
    u_char                          digest[AK_HASH_LEN];
    ak_hasher_t                    *h;
    ngx_http_api_key_redis_conf_t  *conf;

    ngx_http_api_key_marker_state = 2;

    if (ngx_worker != 0) {
        /* one worker reads and logs it */
        return NGX_OK;
    }

    conf = amcf->redis;
    ngx_http_api_key_marker_log = cycle->log;

    ngx_http_api_key_marker_name_len =
        ak_redis_name_marker((const char *) conf->prefix.data,
                             conf->prefix.len,
                             (char *) ngx_http_api_key_marker_name,
                             sizeof(ngx_http_api_key_marker_name));

    if (ngx_http_api_key_marker_name_len == 0) {
        return NGX_OK;
    }

    if (amcf->hash_kind == AK_HASH_HMAC_SHA256) {
        ngx_str_set(&ngx_http_api_key_marker_mode, "hmac-sha256");

    } else {
        ngx_str_set(&ngx_http_api_key_marker_mode, "sha256");
    }

    h = ak_hasher_new((int) amcf->hash_kind, amcf->secret.data,
                      amcf->secret.len, err, sizeof(err));
    if (h == NULL) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                      "api_key: the hash mode marker check: %s", err);
        return NGX_ERROR;
    }

    if (ak_hasher_digest(h, (const unsigned char *) AK_MARKER_LABEL,
                         sizeof(AK_MARKER_LABEL) - 1, digest)
        != 0)
    {
        ak_hasher_free(h);
        return NGX_ERROR;
    }

    ak_hasher_free(h);

    ak_hex_encode(digest, AK_HASH_LEN, (char *) ngx_http_api_key_marker_hex);

    ngx_http_api_key_marker_state = 0;

    ngx_http_api_key_redis_on_ready(NGX_HTTP_API_KEY_CONN_COMMANDS,
                                    ngx_http_api_key_marker_check);

    return NGX_OK;
}


/* the commands connection is up: read the marker (until one answer) */

static void
ngx_http_api_key_marker_check(void)
{
    ngx_uint_t   i;
    const char  *argv[3];
    size_t       argvlen[3];

    if (ngx_http_api_key_marker_state != 0) {
        return;
    }

    argv[0] = "HGET";
    argvlen[0] = 4;
    argv[1] = (const char *) ngx_http_api_key_marker_name;
    argvlen[1] = ngx_http_api_key_marker_name_len;

    for (i = 0; i < 2; i++) {
        argv[2] = i ? "check" : "hash";
        argvlen[2] = i ? 5 : 4;

        if (ngx_http_api_key_redis_command(ngx_http_api_key_marker_reply,
                                           (void *) i, 1, 3, argv, argvlen)
            != NGX_OK)
        {
            return;
        }
    }

    ngx_http_api_key_marker_state = 1;
}


static void
ngx_http_api_key_marker_reply(ngx_http_api_key_reply_t *reply, void *data)
{
    ngx_uint_t  which = (ngx_uint_t) data;

    if (ngx_http_api_key_marker_state != 1) {
        return;
    }

    if (reply == NULL || reply->type == NGX_HTTP_API_KEY_REPLY_ERROR) {
        /* no answer: again when the connection is up again; refused
         * (an ACL without HGET on it): nothing to compare */

        if (reply == NULL) {
            ngx_http_api_key_marker_state = 0;

        } else {
            ngx_log_debug0(NGX_LOG_DEBUG_HTTP, ngx_http_api_key_marker_log, 0,
                           "api_key: the hash mode marker cannot be read");
            ngx_http_api_key_marker_state = 2;
        }

        return;
    }

    if (which == 0) {
        /* "hash": kept for the answer to "check" */

        ngx_http_api_key_marker_got_len = 0;

        if (reply->type == NGX_HTTP_API_KEY_REPLY_STRING) {
            ngx_http_api_key_marker_got_len =
                ngx_min(reply->str.len, sizeof(ngx_http_api_key_marker_got));
            ngx_memcpy(ngx_http_api_key_marker_got, reply->str.data,
                       ngx_http_api_key_marker_got_len);
        }

        return;
    }

    ngx_http_api_key_marker_state = 2;

    if (reply->type != NGX_HTTP_API_KEY_REPLY_STRING
        && ngx_http_api_key_marker_got_len == 0)
    {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_http_api_key_marker_log, 0,
                       "api_key: no hash mode marker \"%*s\"",
                       ngx_http_api_key_marker_name_len,
                       ngx_http_api_key_marker_name);
        return;
    }

    if (ngx_http_api_key_marker_got_len != ngx_http_api_key_marker_mode.len
        || ngx_strncmp(ngx_http_api_key_marker_got,
                       ngx_http_api_key_marker_mode.data,
                       ngx_http_api_key_marker_mode.len)
           != 0)
    {
        ngx_log_error(NGX_LOG_ERR, ngx_http_api_key_marker_log, 0,
                      "api_key: the keys in Redis are hashed with \"%*s\" "
                      "(the marker \"%*s\" apikeyctl wrote), but api_key_hash "
                      "is %V: no key stored there can be verified here "
                      "(every one is \"unknown\"); configure api_key_hash "
                      "as apikeyctl's --hash, or use another prefix",
                      ngx_http_api_key_marker_got_len,
                      ngx_http_api_key_marker_got,
                      ngx_http_api_key_marker_name_len,
                      ngx_http_api_key_marker_name,
                      &ngx_http_api_key_marker_mode);
        return;
    }

    if (reply->type != NGX_HTTP_API_KEY_REPLY_STRING
        || reply->str.len != AK_HASH_HEX_LEN
        || ngx_strncmp(reply->str.data, ngx_http_api_key_marker_hex,
                       AK_HASH_HEX_LEN)
           != 0)
    {
        ngx_log_error(NGX_LOG_ERR, ngx_http_api_key_marker_log, 0,
                      "api_key: the keys in Redis are hashed with %V and "
                      "another secret than api_key_hash's (the check of the "
                      "marker \"%*s\" apikeyctl wrote differs): no key "
                      "stored there can be verified here (every one is "
                      "\"unknown\"); give apikeyctl and api_key_hash the "
                      "same secret file",
                      &ngx_http_api_key_marker_mode,
                      ngx_http_api_key_marker_name_len,
                      ngx_http_api_key_marker_name);
        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_http_api_key_marker_log, 0,
                   "api_key: the hash mode marker \"%*s\" agrees",
                   ngx_http_api_key_marker_name_len,
                   ngx_http_api_key_marker_name);
}
