/* SPDX-License-Identifier: BSD-2-Clause */

/*
 * ngx_http_api_key_module: api_key_redis's URL and parameters, parsed at
 * configuration time into ngx_http_api_key_redis_conf_t (the URL forms grow
 * here: rediss:// and its TLS context, made here; Sentinel, Cluster), the
 * URL as logs may show it (redacted), and
 * the two configuration readers module.c shares with it: times ("ttl=60s")
 * and small secret files (password_file=, secret_file=).
 */


#include "ngx_http_api_key.h"


static ngx_int_t ngx_http_api_key_parse_url(ngx_conf_t *cf,
    ngx_http_api_key_redis_conf_t *rcf, ngx_str_t *url);
static u_char *ngx_http_api_key_parse_userinfo(
    ngx_http_api_key_redis_conf_t *rcf, u_char *p, u_char *last);
static ngx_int_t ngx_http_api_key_parse_cluster_url(ngx_conf_t *cf,
    ngx_http_api_key_redis_conf_t *rcf, ngx_str_t *url);
static ngx_int_t ngx_http_api_key_parse_sentinel_url(ngx_conf_t *cf,
    ngx_http_api_key_redis_conf_t *rcf, ngx_str_t *url, u_char *p);
static ngx_int_t ngx_http_api_key_sentinel_host(ngx_conf_t *cf,
    ngx_http_api_key_redis_conf_t *rcf, ngx_str_t *url, ngx_str_t *hostport);
static ngx_int_t ngx_http_api_key_tls_file(ngx_conf_t *cf, ngx_str_t *arg,
    size_t skip, ngx_str_t *out);
static ngx_int_t ngx_http_api_key_tls_conf(ngx_conf_t *cf,
    ngx_http_api_key_redis_conf_t *rcf);
static ngx_int_t ngx_http_api_key_redact_url(ngx_pool_t *pool, ngx_str_t *url,
    ngx_str_t *out);
static ngx_str_t *ngx_http_api_key_bad_url(ngx_pool_t *pool, ngx_str_t *url);
static void ngx_http_api_key_wipe(void *data);


/* api_key_redis's arguments (cf->args, see module.c) into rcf */

ngx_int_t
ngx_http_api_key_redis_parse(ngx_conf_t *cf,
    ngx_http_api_key_redis_conf_t *rcf)
{
    ngx_int_t    n;
    ngx_str_t   *value, s, *tls_arg;
    ngx_uint_t   i;

    value = cf->args->elts;
    tls_arg = NULL;

    rcf->timeout = 100;
    rcf->connect_timeout = 1000;
    rcf->max_pending = 1000;
    rcf->max_timeouts = 3;
    rcf->tls_verify = 1;
    ngx_str_set(&rcf->prefix, "apikey:");
    ngx_str_set(&rcf->channel, "apikey:events");

    if (ngx_http_api_key_parse_url(cf, rcf, &value[1]) != NGX_OK) {
        return NGX_ERROR;
    }

    /* its "resolver" (set by now or later in the http block) */
    rcf->core = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "timeout=", 8) == 0) {
            if (ngx_http_api_key_msec_arg(cf, &value[i], 8, &rcf->timeout)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            if (rcf->timeout == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"%V\": must be positive", &value[i]);
                return NGX_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "connect_timeout=", 16) == 0) {
            if (ngx_http_api_key_msec_arg(cf, &value[i], 16,
                                          &rcf->connect_timeout)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            if (rcf->connect_timeout == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"%V\": must be positive", &value[i]);
                return NGX_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "password_file=", 14) == 0) {
            s.data = value[i].data + 14;
            s.len = value[i].len - 14;

            if (rcf->password.len) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "password given twice: in the url and "
                                   "in \"password_file\"");
                return NGX_ERROR;
            }

            if (ngx_http_api_key_read_secret(cf, &s, &rcf->password,
                                             "password_file")
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "sentinel_password_file=", 23) == 0) {
            s.data = value[i].data + 23;
            s.len = value[i].len - 23;

            if (!rcf->sentinel) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"sentinel_password_file\" needs a "
                                   "redis-sentinel:// or rediss-sentinel:// "
                                   "url");
                return NGX_ERROR;
            }

            if (ngx_http_api_key_read_secret(cf, &s, &rcf->sentinel_password,
                                             "sentinel_password_file")
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "prefix=", 7) == 0) {
            rcf->prefix.data = value[i].data + 7;
            rcf->prefix.len = value[i].len - 7;

            if (rcf->prefix.len > AK_REDIS_PREFIX_MAX) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"prefix\" is longer than %d bytes",
                                   AK_REDIS_PREFIX_MAX);
                return NGX_ERROR;
            }

            if (ak_redis_prefix_check((const char *) rcf->prefix.data,
                                      rcf->prefix.len)
                != 0)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"prefix\" must not contain \"{\" or "
                                   "\"}\": the per-key names use the "
                                   "record's name as their Redis Cluster "
                                   "hash tag");
                return NGX_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "channel=", 8) == 0) {
            rcf->channel.data = value[i].data + 8;
            rcf->channel.len = value[i].len - 8;

            if (rcf->channel.len == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "empty \"channel\"");
                return NGX_ERROR;
            }

            continue;
        }

        if (ngx_strcmp(value[i].data, "keyspace_events=on") == 0) {
            rcf->keyspace_events = 1;
            continue;
        }

        if (ngx_strncmp(value[i].data, "max_pending=", 12) == 0) {
            n = ngx_atoi(value[i].data + 12, value[i].len - 12);

            if (n < 1 || n > 100000) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid \"%V\": expected a number of "
                                   "commands from 1 to 100000", &value[i]);
                return NGX_ERROR;
            }

            rcf->max_pending = (ngx_uint_t) n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "max_timeouts=", 13) == 0) {
            n = ngx_atoi(value[i].data + 13, value[i].len - 13);

            if (n < 1 || n > 1000) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid \"%V\": expected a number of "
                                   "timeouts from 1 to 1000", &value[i]);
                return NGX_ERROR;
            }

            rcf->max_timeouts = (ngx_uint_t) n;
            continue;
        }

        if (ngx_strcmp(value[i].data, "keyspace_events=off") == 0) {
            rcf->keyspace_events = 0;
            continue;
        }

        if (ngx_strncmp(value[i].data, "tls_", 4) == 0) {
            tls_arg = &value[i];
        }

        if (ngx_strncmp(value[i].data, "tls_verify=", 11) == 0) {
            if (ngx_strcmp(value[i].data + 11, "on") == 0) {
                rcf->tls_verify = 1;

            } else if (ngx_strcmp(value[i].data + 11, "off") == 0) {
                rcf->tls_verify = 0;

            } else {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid \"%V\": expected tls_verify=on "
                                   "or tls_verify=off", &value[i]);
                return NGX_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "tls_ca=", 7) == 0) {
            if (ngx_http_api_key_tls_file(cf, &value[i], 7, &rcf->tls_ca)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "tls_cert=", 9) == 0) {
            if (ngx_http_api_key_tls_file(cf, &value[i], 9, &rcf->tls_cert)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "tls_key=", 8) == 0) {
            if (ngx_http_api_key_tls_file(cf, &value[i], 8, &rcf->tls_key)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "tls_name=", 9) == 0) {
            rcf->tls_name.data = value[i].data + 9;
            rcf->tls_name.len = value[i].len - 9;

            if (rcf->tls_name.len == 0
                || ngx_strlchr(rcf->tls_name.data,
                               rcf->tls_name.data + rcf->tls_name.len, '/')
                || ngx_strlchr(rcf->tls_name.data,
                               rcf->tls_name.data + rcf->tls_name.len, ' '))
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid \"%V\": expected a host name",
                                   &value[i]);
                return NGX_ERROR;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_ERROR;
    }

    if (rcf->user.len && rcf->password.len == 0) {
        /* not the user: "redis://secret@host" may be a password alone */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid redis url \"%V\": a user without a "
                           "password: give it in the url "
                           "(user:password@host) or in \"password_file\"",
                           ngx_http_api_key_bad_url(cf->pool, &value[1]));
        return NGX_ERROR;
    }

    if (!rcf->tls) {
        if (tls_arg) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%V\" needs a rediss:// url (TLS)",
                               tls_arg);
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    return ngx_http_api_key_tls_conf(cf, rcf);
}


/* tls_ca=, tls_cert=, tls_key=: a file, readable now, by its full name */

static ngx_int_t
ngx_http_api_key_tls_file(ngx_conf_t *cf, ngx_str_t *arg, size_t skip,
    ngx_str_t *out)
{
    ngx_fd_t  fd;

    out->data = arg->data + skip;
    out->len = arg->len - skip;

    if (out->len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"%V\": no file", arg);
        return NGX_ERROR;
    }

    if (ngx_conf_full_name(cf->cycle, out, 1) != NGX_OK) {
        return NGX_ERROR;
    }

    fd = ngx_open_file(out->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "\"%*s\": cannot open \"%V\"", skip - 1,
                           arg->data, out);
        return NGX_ERROR;
    }

    ngx_close_file(fd);

    return NGX_OK;
}


/*
 * rediss://: the TLS context, made now (TLS 1.2 and 1.3).  tls_verify=on
 * (the default): the server's certificate chain is checked against tls_ca,
 * or the system's CA store, and its name against tls_name or the url's
 * host, after the handshake (redis_io.c).  tls_name, or a host that is a
 * name, is sent as the SNI.  TLS sessions are kept for the next connection.
 */

static ngx_int_t
ngx_http_api_key_tls_conf(ngx_conf_t *cf, ngx_http_api_key_redis_conf_t *rcf)
{
#if (NGX_SSL)
    char                *file;
    u_char              *p;
    ngx_pool_cleanup_t  *cln;

    if ((rcf->tls_cert.len == 0) != (rcf->tls_key.len == 0)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%s\" without \"%s\": a client certificate "
                           "needs both", rcf->tls_cert.len ? "tls_cert"
                                                           : "tls_key",
                           rcf->tls_cert.len ? "tls_key" : "tls_cert");
        return NGX_ERROR;
    }

    if (rcf->tls_name.len) {
        rcf->tls_name_set = 1;

    } else if (rcf->sentinel) {
        /* the address the sentinels give, per connection (sentinel.c) */
        goto context;

    } else {
        rcf->tls_name = rcf->host;
    }

    /*
     * "redis.example." is "redis.example": the name checked and the SNI
     * (RFC 6066: no trailing dot) go without the dot; the SNI is read as a
     * C string, hence the copy
     */

    if (rcf->tls_name.len > 1
        && rcf->tls_name.data[rcf->tls_name.len - 1] == '.')
    {
        p = ngx_pnalloc(cf->pool, rcf->tls_name.len);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(p, rcf->tls_name.data, rcf->tls_name.len - 1);
        p[rcf->tls_name.len - 1] = '\0';

        rcf->tls_name.data = p;
        rcf->tls_name.len--;
    }

    /* SNI: a name, never an IP address (RFC 6066) */

    if (ngx_inet_addr(rcf->tls_name.data, rcf->tls_name.len) == INADDR_NONE
#if (NGX_HAVE_INET6)
        && ngx_strlchr(rcf->tls_name.data,
                       rcf->tls_name.data + rcf->tls_name.len, ':') == NULL
#endif
        )
    {
        rcf->tls_sni = rcf->tls_name;
    }

context:

    rcf->ssl = ngx_pcalloc(cf->pool, sizeof(ngx_ssl_t));
    if (rcf->ssl == NULL) {
        return NGX_ERROR;
    }

    rcf->ssl->log = cf->log;

    if (ngx_ssl_create(rcf->ssl, NGX_SSL_TLSv1_2|NGX_SSL_TLSv1_3, NULL)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        ngx_ssl_cleanup_ctx(rcf->ssl);
        return NGX_ERROR;
    }

    cln->handler = ngx_ssl_cleanup_ctx;
    cln->data = rcf->ssl;

    if (rcf->tls_cert.len) {
        if (ngx_ssl_certificate(cf, rcf->ssl, &rcf->tls_cert, &rcf->tls_key,
                                NULL)
            != NGX_OK)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "cannot use \"%V\" and \"%V\" as the "
                               "client certificate", &rcf->tls_cert,
                               &rcf->tls_key);
            return NGX_ERROR;
        }
    }

    if (rcf->tls_verify) {
        if (rcf->tls_ca.len) {
            if (ngx_ssl_trusted_certificate(cf, rcf->ssl, &rcf->tls_ca, 9)
                != NGX_OK)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "cannot use \"%V\" as tls_ca",
                                   &rcf->tls_ca);
                return NGX_ERROR;
            }

        } else {

            /*
             * the system's CA store: OpenSSL's default bundle file
             * (SSL_CERT_FILE, or Debian's /usr/lib/ssl/cert.pem ->
             * /etc/ssl/certs/ca-certificates.crt), read now.  Not its
             * hashed directory: that one is looked up while a chain is
             * verified, a file read in a worker during each handshake
             * with a server it does not know
             */

            file = getenv(X509_get_default_cert_file_env());
            if (file == NULL || file[0] == '\0') {
                file = (char *) X509_get_default_cert_file();
            }

            if (SSL_CTX_load_verify_locations(rcf->ssl->ctx, file, NULL)
                != 1)
            {
                ngx_ssl_error(NGX_LOG_EMERG, cf->log, 0,
                              "SSL_CTX_load_verify_locations(\"%s\") failed",
                              file);
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "cannot use the system's CA store \"%s\": "
                                   "give tls_ca=FILE", file);
                return NGX_ERROR;
            }
        }
    }

    if (ngx_ssl_client_session_cache(cf, rcf->ssl, 1) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_OK;

#else

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "rediss:// needs nginx built with OpenSSL");
    return NGX_ERROR;

#endif
}


/*
 * redis://[user[:password]@]host[:port][/db], the same with rediss:// (TLS),
 * or unix:/path.sock[?db=N]
 * host is an IP address, or a name resolved now, at configuration time (the
 * master's getaddrinfo(); a name that does not resolve is not an error),
 * and again by the workers through nginx's resolver, if the http block has
 * one (redis.c): a worker never blocks on a name.
 *
 * The userinfo ends at the last '@' of the whole url (as in apikeyctl): a
 * password may hold a '/', and a host, a port or a database never holds an
 * '@'.  An error names the url as ngx_http_api_key_bad_url() shows it and
 * what is wrong, never a part of it on its own (a host, a port, a database
 * or a user): in a url written wrong, a password may stand there.
 */

static ngx_int_t
ngx_http_api_key_parse_url(ngx_conf_t *cf, ngx_http_api_key_redis_conf_t *rcf,
    ngx_str_t *url)
{
    u_char           *p, *last, *slash, *q;
    size_t            n;
    ngx_url_t         u;
#if (NGX_HAVE_INET6)
    struct in6_addr   in6;
#endif
    ngx_str_t    db, hostport;
    const char  *what;

    /* rcf->url_redacted is what logs show: never the password */

    if (ngx_http_api_key_redact_url(cf->pool, url, &rcf->url_redacted) != NGX_OK) {
        return NGX_ERROR;
    }

    rcf->db = 0;
    ngx_str_null(&db);
    what = "expected redis://[user[:password]@]host:port[/db], "
           "rediss://[user[:password]@]host:port[/db], "
           "unix:/path.sock[?db=N] or "
           "redis-sentinel://[user[:password]@]host:port,.../MASTER[/db]";

    last = url->data + url->len;

    if (url->len > 5 && ngx_strncmp(url->data, "unix:", 5) == 0) {
        p = url->data + 5;

        q = ngx_strlchr(p, last, '?');
        if (q) {
            if (last - q < 5 || ngx_strncmp(q, "?db=", 4) != 0) {
                goto invalid;
            }

            db.data = q + 4;
            db.len = last - db.data;
            last = q;
        }

        if (p == last || *p != '/') {
            goto invalid;
        }

        rcf->path.len = last - p;
        rcf->path.data = ngx_pnalloc(cf->pool, rcf->path.len + 1);
        if (rcf->path.data == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(rcf->path.data, p, rcf->path.len);
        rcf->path.data[rcf->path.len] = '\0';

        /* "unix:/path" as nginx parses it: a sockaddr_un */

        ngx_memzero(&u, sizeof(ngx_url_t));

        u.url.data = url->data;
        u.url.len = last - url->data;

        if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.naddrs == 0) {
            what = u.err ? u.err : "invalid socket path";
            goto invalid;
        }

        rcf->addr = u.addrs[0];

        goto parse_db;
    }

    if (url->len > 17 && ngx_strncmp(url->data, "redis-sentinel://", 17) == 0)
    {
        return ngx_http_api_key_parse_sentinel_url(cf, rcf, url,
                                                   url->data + 17);
    }

    if (url->len > 18
        && ngx_strncmp(url->data, "rediss-sentinel://", 18) == 0)
    {
        rcf->tls = 1;
        return ngx_http_api_key_parse_sentinel_url(cf, rcf, url,
                                                   url->data + 18);
    }

    if ((url->len > 16 && ngx_strncmp(url->data, "redis-cluster://", 16) == 0)
        || (url->len > 17
            && ngx_strncmp(url->data, "rediss-cluster://", 17) == 0))
    {
        return ngx_http_api_key_parse_cluster_url(cf, rcf, url);
    }

    if (url->len > 8 && ngx_strncmp(url->data, "redis://", 8) == 0) {
        p = url->data + 8;

    } else if (url->len > 9 && ngx_strncmp(url->data, "rediss://", 9) == 0) {
        p = url->data + 9;
        rcf->tls = 1;

    } else {
        goto invalid;
    }

    /* userinfo: up to the last '@' (redis://user@host: the password comes
     * from password_file) */

    p = ngx_http_api_key_parse_userinfo(rcf, p, last);

    slash = ngx_strlchr(p, last, '/');
    if (slash == NULL) {
        slash = last;
    }

    hostport.data = p;
    hostport.len = slash - p;

    if (slash < last) {
        db.data = slash + 1;
        db.len = last - db.data;
    }

    if (hostport.len == 0) {
        what = "no host";
        goto invalid;
    }

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url = hostport;
    u.default_port = 6379;
    u.no_resolve = 1;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.host.len == 0) {
        what = u.err ? u.err : "invalid host";
        goto invalid;
    }

    rcf->port = u.port;

    /* the host as written (a name: resolved again by the workers) */

    q = u.host.data;
    n = u.host.len;

    if (n >= 2 && q[0] == '[' && q[n - 1] == ']') {
        q++;
        n -= 2;
    }

    rcf->host.data = ngx_pnalloc(cf->pool, n + 1);
    if (rcf->host.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(rcf->host.data, q, n);
    rcf->host.data[n] = '\0';
    rcf->host.len = n;

    rcf->resolve = (ngx_inet_addr(q, n) == INADDR_NONE);

#if (NGX_HAVE_INET6)
    if (rcf->resolve && ngx_inet6_addr(q, n, in6.s6_addr) == NGX_OK) {
        rcf->resolve = 0;
    }
#endif

    /*
     * an address now (an IP address is one already; a name: getaddrinfo(),
     * at configuration time only);
     * a name that does not resolve yet does not stop nginx: the workers
     * resolve it through the http block's "resolver", if any
     */

    if (u.naddrs == 0
        && (ngx_inet_resolve_host(cf->pool, &u) != NGX_OK || u.naddrs == 0))
    {

        if (!rcf->resolve) {
            what = u.err ? u.err : "invalid host";
            goto invalid;
        }

        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "redis url \"%V\": the host does not resolve "
                           "now (%s); the workers resolve it through the "
                           "\"resolver\" of the http block, without one "
                           "redis cannot be reached until a reload",
                           &rcf->url_redacted, u.err ? u.err : "no address");
        goto parse_db;
    }

    /* the first address; its text (IP:port) is what nginx's logs show */

    rcf->addr = u.addrs[0];

    if (u.naddrs > 1) {
        /* a name that resolved: a host, not a password */
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "redis host \"%V\" has several addresses, "
                           "using %V", &u.host, &rcf->addr.name);
    }

parse_db:

    if (db.len) {
        rcf->db = ngx_atoi(db.data, db.len);
        if (rcf->db == NGX_ERROR) {
            what = "the database must be a number";
            goto invalid;
        }
    }

    return NGX_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid redis url \"%V\": %s",
                       ngx_http_api_key_bad_url(cf->pool, url), what);
    return NGX_ERROR;
}


/*
 * [user[:password]@] of every URL form: up to the last '@' of the url (a
 * password may hold '@'), the user up to the first ':' before it; no ':'
 * is a user alone.  Returns where the host part starts.
 */

static u_char *
ngx_http_api_key_parse_userinfo(ngx_http_api_key_redis_conf_t *rcf,
    u_char *p, u_char *last)
{
    u_char  *q, *at, *colon;

    at = NULL;

    for (q = p; q < last; q++) {
        if (*q == '@') {
            at = q;
        }
    }

    if (at == NULL) {
        return p;
    }

    colon = ngx_strlchr(p, at, ':');

    rcf->user.data = p;
    rcf->user.len = (colon ? colon : at) - p;

    if (colon) {
        rcf->password.data = colon + 1;
        rcf->password.len = at - colon - 1;
    }

    return at + 1;
}


/*
 * redis-sentinel://[user[:password]@]host1:port1,host2:port2,.../MASTER[/db]
 * and rediss-sentinel:// (TLS to the master, not to the sentinels): the
 * sentinels to ask (port 26379 by default; up to 64; a name is resolved
 * now, at configuration time, its first address kept), the master's name
 * (1 to 256 bytes, printable, no space), the database.  The user and the
 * password are the master's (the sentinels' is sentinel_password_file=).
 * p: after the scheme.  Errors name the url as ngx_http_api_key_bad_url()
 * shows it, as for redis://.
 */

#define NGX_HTTP_API_KEY_SENTINELS_MAX  64

static ngx_int_t
ngx_http_api_key_parse_sentinel_url(ngx_conf_t *cf,
    ngx_http_api_key_redis_conf_t *rcf, ngx_str_t *url, u_char *p)
{
    u_char       *q, *last, *slash, *comma, *name_end;
    ngx_str_t     hosts, hostport, db;
    ngx_uint_t    n;
    const char   *what;

    rcf->sentinel = 1;
    rcf->db = 0;

    last = url->data + url->len;
    what = "expected redis-sentinel://[user[:password]@]host:port,"
           "host:port,.../MASTER[/db]";

    p = ngx_http_api_key_parse_userinfo(rcf, p, last);

    slash = ngx_strlchr(p, last, '/');

    if (slash == NULL || slash + 1 == last) {
        what = "no master name: redis-sentinel://host:port,.../MASTER";
        goto invalid;
    }

    hosts.data = p;
    hosts.len = slash - p;

    if (hosts.len == 0) {
        what = "no sentinel";
        goto invalid;
    }

    /* MASTER[/db] */

    q = slash + 1;
    name_end = ngx_strlchr(q, last, '/');
    if (name_end == NULL) {
        name_end = last;
    }

    if (name_end == q || name_end - q > 256) {
        what = "the master's name must be 1 to 256 bytes";
        goto invalid;
    }

    for (p = q; p < name_end; p++) {
        if (*p <= 0x20 || *p >= 0x7f) {
            what = "the master's name must be printable, without spaces";
            goto invalid;
        }
    }

    rcf->master_name.len = name_end - q;
    rcf->master_name.data = ngx_pnalloc(cf->pool, rcf->master_name.len + 1);
    if (rcf->master_name.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(rcf->master_name.data, q, rcf->master_name.len);
    rcf->master_name.data[rcf->master_name.len] = '\0';

    if (name_end < last) {
        db.data = name_end + 1;
        db.len = last - db.data;

        rcf->db = (db.len == 0) ? NGX_ERROR : ngx_atoi(db.data, db.len);

        if (rcf->db == NGX_ERROR) {
            what = "the database must be a number";
            goto invalid;
        }
    }

    /* the sentinels */

    rcf->sentinels = ngx_array_create(cf->pool, 4, sizeof(ngx_addr_t));
    if (rcf->sentinels == NULL) {
        return NGX_ERROR;
    }

    n = 0;
    p = hosts.data;
    last = hosts.data + hosts.len;

    for ( ;; ) {
        comma = ngx_strlchr(p, last, ',');
        if (comma == NULL) {
            comma = last;
        }

        hostport.data = p;
        hostport.len = comma - p;

        if (hostport.len == 0) {
            what = "an empty sentinel in the list";
            goto invalid;
        }

        if (++n > NGX_HTTP_API_KEY_SENTINELS_MAX) {
            what = "more than 64 sentinels";
            goto invalid;
        }

        switch (ngx_http_api_key_sentinel_host(cf, rcf, url, &hostport)) {
        case NGX_ERROR:
            return NGX_ERROR;
        case NGX_DECLINED:
            what = "invalid sentinel host or port";
            goto invalid;
        default:
            break;
        }

        if (comma == last) {
            break;
        }

        p = comma + 1;
    }

    if (rcf->sentinels->nelts == 0) {
        what = "no sentinel host resolves";
        goto invalid;
    }

    return NGX_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid redis url \"%V\": %s",
                       ngx_http_api_key_bad_url(cf->pool, url), what);
    return NGX_ERROR;
}


/*
 * One sentinel's host[:port] into rcf->sentinels: NGX_DECLINED when it does
 * not parse; a name that does not resolve is left out with a warning.
 */

static ngx_int_t
ngx_http_api_key_sentinel_host(ngx_conf_t *cf,
    ngx_http_api_key_redis_conf_t *rcf, ngx_str_t *url, ngx_str_t *hostport)
{
    ngx_url_t    u;
    ngx_addr_t  *a;

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url = *hostport;
    u.default_port = 26379;
    u.no_resolve = 1;

    if (ngx_strlchr(hostport->data, hostport->data + hostport->len, '/')
        || ngx_parse_url(cf->pool, &u) != NGX_OK || u.host.len == 0
        || u.family == AF_UNIX)
    {
        return NGX_DECLINED;
    }

    if (u.naddrs == 0
        && (ngx_inet_resolve_host(cf->pool, &u) != NGX_OK || u.naddrs == 0))
    {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "redis url \"%V\": a sentinel's host does not "
                           "resolve (%s), it is left out", &rcf->url_redacted,
                           u.err ? u.err : "no address");
        return NGX_OK;
    }

    a = ngx_array_push(rcf->sentinels);
    if (a == NULL) {
        return NGX_ERROR;
    }

    *a = u.addrs[0];

    return NGX_OK;
}


/*
 * redis-cluster://[user[:password]@]host1:port1,host2:port2,...[/0] (and
 * rediss-cluster://): the seed nodes, each an IP address or a host name
 * resolved now (the workers learn the cluster's nodes from CLUSTER SLOTS,
 * by their addresses); database 0 only, as Redis Cluster has no other.
 * rcf->addr, host and port are the first seed's (a TLS name to check).
 * Errors show the url as ngx_http_api_key_bad_url() does.
 */

static ngx_int_t
ngx_http_api_key_parse_cluster_url(ngx_conf_t *cf,
    ngx_http_api_key_redis_conf_t *rcf, ngx_str_t *url)
{
    u_char       *p, *q, *last, *end, *comma;
    ngx_url_t     u;
    ngx_addr_t   *seed;
    const char   *what;

    rcf->cluster = 1;
    rcf->db = 0;

    what = "expected redis-cluster://[user[:password]@]host:port,"
           "host:port,... or rediss-cluster://...";

    if (url->data[5] == 's') {
        rcf->tls = 1;
        p = url->data + 17;

    } else {
        p = url->data + 16;
    }

    last = url->data + url->len;

    p = ngx_http_api_key_parse_userinfo(rcf, p, last);

    end = ngx_strlchr(p, last, '/');

    if (end) {
        if (last - end != 2 || end[1] != '0') {
            what = "a redis cluster has database 0 only";
            goto invalid;
        }

        last = end;
    }

    rcf->seeds = ngx_array_create(cf->pool, 4, sizeof(ngx_addr_t));
    if (rcf->seeds == NULL) {
        return NGX_ERROR;
    }

    while (p <= last) {
        comma = ngx_strlchr(p, last, ',');
        if (comma == NULL) {
            comma = last;
        }

        if (comma == p) {
            what = "an empty host in the list of seed nodes";
            goto invalid;
        }

        ngx_memzero(&u, sizeof(ngx_url_t));

        u.url.data = p;
        u.url.len = comma - p;
        u.default_port = 6379;

        /* an IP address, or a name resolved now (configuration time) */

        if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.host.len == 0
            || u.naddrs == 0 || u.family == AF_UNIX)
        {
            what = (u.err && u.naddrs == 0) ? u.err
                   : "a seed node is not a host:port that resolves";
            goto invalid;
        }

        seed = ngx_array_push(rcf->seeds);
        if (seed == NULL) {
            return NGX_ERROR;
        }

        *seed = u.addrs[0];

        if (rcf->seeds->nelts == 1) {
            rcf->addr = u.addrs[0];
            rcf->port = u.port;

            q = u.host.data;

            if (u.host.len >= 2 && q[0] == '[') {
                q++;
            }

            rcf->host.len = (q == u.host.data) ? u.host.len : u.host.len - 2;
            rcf->host.data = ngx_pnalloc(cf->pool, rcf->host.len + 1);
            if (rcf->host.data == NULL) {
                return NGX_ERROR;
            }

            ngx_memcpy(rcf->host.data, q, rcf->host.len);
            rcf->host.data[rcf->host.len] = '\0';
        }

        p = comma + 1;
    }

    return NGX_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid redis url \"%V\": %s",
                       ngx_http_api_key_bad_url(cf->pool, url), what);
    return NGX_ERROR;
}


/*
 * The url as logs may show it: the password of its userinfo (after
 * "scheme://", or the start, up to the last '@') becomes "***":
 * "redis://alice:***@host:6379".  A user name is kept.  Also used for urls
 * that do not parse, so that a mistyped one is not echoed with its password.
 */

static ngx_int_t
ngx_http_api_key_redact_url(ngx_pool_t *pool, ngx_str_t *url, ngx_str_t *out)
{
    u_char  *p, *start, *at, *colon, *last;

    last = url->data + url->len;

    start = ngx_strlcasestrn(url->data, last, (u_char *) "://", 3 - 1);
    start = (start == NULL) ? url->data : start + 3;

    at = NULL;
    for (p = start; p < last; p++) {
        if (*p == '@') {
            at = p;
        }
    }

    if (url->len >= 5 && ngx_strncmp(url->data, "unix:", 5) == 0) {
        at = NULL;              /* a socket path, no userinfo */
    }

    colon = (at == NULL) ? NULL : ngx_strlchr(start, at, ':');

    if (colon == NULL) {
        *out = *url;
        return NGX_OK;
    }

    out->len = (colon + 1 - url->data) + sizeof("***") - 1 + (last - at);
    out->data = ngx_pnalloc(pool, out->len);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(out->data, url->data, colon + 1 - url->data);
    p = ngx_cpymem(p, "***", sizeof("***") - 1);
    ngx_memcpy(p, at, last - at);

    return NGX_OK;
}


/*
 * A url that does not parse, as configuration errors show it: the scheme,
 * a user followed by ':', and the host[:port] after the last '@'; "***"
 * where a password could stand, since a url written wrong may have one
 * anywhere: the password, a user without a ':' ("redis://secret@host"), the
 * database, and in a url without '@' everything after the first ':' of the
 * host[:port] ("redis://alice:secret", a userinfo that lost its '@' and
 * host).  So "redis://alice:pw@host:port/x" is shown with "alice:***@" and
 * "host:port" followed by a '/' and "***"; "redis://alice:pw" is
 * "redis://alice:***".
 */

static ngx_str_t *
ngx_http_api_key_bad_url(ngx_pool_t *pool, ngx_str_t *url)
{
    u_char     *p, *d, *start, *last, *at, *colon, *slash;
    ngx_str_t  *out;

    static ngx_str_t  none = ngx_string("(the url)");

    out = ngx_palloc(pool, sizeof(ngx_str_t));
    if (out == NULL) {
        return &none;
    }

    /* each "***" replaces at least one byte: 2 of them at most add 6 bytes */

    out->data = ngx_pnalloc(pool, url->len + 8);
    if (out->data == NULL) {
        return &none;
    }

    d = out->data;
    last = url->data + url->len;

    if (url->len >= 5 && ngx_strncmp(url->data, "unix:", 5) == 0) {
        /* a socket path; its database is not shown */

        p = ngx_strlchr(url->data, last, '?');

        if (p == NULL) {
            d = ngx_cpymem(d, url->data, url->len);

        } else {
            d = ngx_cpymem(d, url->data, p - url->data);
            d = ngx_cpymem(d, "?***", 4);
        }

        out->len = d - out->data;
        return out;
    }

    start = ngx_strlcasestrn(url->data, last, (u_char *) "://", 3 - 1);
    start = (start == NULL) ? url->data : start + 3;

    d = ngx_cpymem(d, url->data, start - url->data);

    at = NULL;
    for (p = start; p < last; p++) {
        if (*p == '@') {
            at = p;
        }
    }

    if (at) {
        colon = ngx_strlchr(start, at, ':');

        if (colon) {
            d = ngx_cpymem(d, start, colon + 1 - start);
        }

        d = ngx_cpymem(d, "***@", 4);
        start = at + 1;
    }

    slash = ngx_strlchr(start, last, '/');
    if (slash == NULL) {
        slash = last;
    }

    colon = NULL;

    if (at == NULL) {
        p = start;

        if (p < slash && *p == '[') {
            p = ngx_strlchr(p, slash, ']');
            p = (p == NULL) ? slash : p;
        }

        colon = ngx_strlchr(p, slash, ':');
    }

    if (colon) {
        d = ngx_cpymem(d, start, colon + 1 - start);
        d = ngx_cpymem(d, "***", 3);

    } else {
        d = ngx_cpymem(d, start, slash - start);

        if (slash < last) {
            d = ngx_cpymem(d, "/***", 4);
        }
    }

    out->len = d - out->data;

    return out;
}


/* reads a small secret file; one trailing newline is not part of it */

ngx_int_t
ngx_http_api_key_read_secret(ngx_conf_t *cf, ngx_str_t *path, ngx_str_t *out,
    const char *what)
{
    ssize_t              n;
    ngx_fd_t             fd;
    ngx_str_t            name;
    ngx_file_info_t      fi;
    ngx_pool_cleanup_t  *cln;

    if (path->len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "empty \"%s\"", what);
        return NGX_ERROR;
    }

    name = *path;

    if (ngx_conf_full_name(cf->cycle, &name, 1) != NGX_OK) {
        return NGX_ERROR;
    }

    fd = ngx_open_file(name.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "%s: cannot open \"%V\"", what, &name);
        return NGX_ERROR;
    }

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "%s: cannot stat \"%V\"", what, &name);
        ngx_close_file(fd);
        return NGX_ERROR;
    }

    if (ngx_file_size(&fi) > 4096) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%s \"%V\" is larger than 4096 bytes",
                           what, &name);
        ngx_close_file(fd);
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        ngx_close_file(fd);
        return NGX_ERROR;
    }

    out->data = ngx_pnalloc(cf->pool, 4097);
    if (out->data == NULL) {
        ngx_close_file(fd);
        return NGX_ERROR;
    }

    cln->handler = ngx_http_api_key_wipe;
    cln->data = out;

    n = ngx_read_fd(fd, out->data, 4097);

    ngx_close_file(fd);

    if (n < 0 || n > 4096) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "%s: cannot read \"%V\"", what, &name);
        out->len = 0;
        return NGX_ERROR;
    }

    out->len = n;

    if (out->len && out->data[out->len - 1] == '\n') {
        out->len--;

        if (out->len && out->data[out->len - 1] == '\r') {
            out->len--;
        }
    }

    if (out->len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%s \"%V\" is empty", what, &name);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_api_key_wipe(void *data)
{
    ngx_str_t  *s = data;

    if (s->data) {
        ngx_explicit_memzero(s->data, 4097);
    }
}


/* a time with a "name=" prefix of skip bytes, e.g. ttl=60s */

ngx_int_t
ngx_http_api_key_msec_arg(ngx_conf_t *cf, ngx_str_t *arg, size_t skip,
    ngx_msec_t *out)
{
    ngx_str_t   s;
    ngx_int_t   ms;

    s.data = arg->data + skip;
    s.len = arg->len - skip;

    ms = ngx_parse_time(&s, 0);

    if (ms == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid time in \"%V\"", arg);
        return NGX_ERROR;
    }

    *out = (ngx_msec_t) ms;

    return NGX_OK;
}
