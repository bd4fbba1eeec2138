/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * apikeyctl: the subcommands.
 *
 * Every change is one MULTI/EXEC transaction under WATCH, and the event the
 * module listens for (revoke/update HASH) is PUBLISHed inside the same
 * transaction, so nginx never sees an event without the change.
 */

#include "commands.hpp"

#include "akcore.hpp"

#include "cluster.hpp"
#include "sentinel.hpp"
#include "util.hpp"

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <optional>
#include <set>
#include <sstream>
#include <unordered_set>

#include <pwd.h>
#include <unistd.h>

namespace apikeyctl {

static const char kDefaultUrl[] = "redis://127.0.0.1:6379";
static const char kDefaultKeyPrefix[] = "ak";


static std::string env(const char *name)
{
    const char *v = std::getenv(name);
    return v ? std::string(v) : std::string();
}


/* "user@host" of the process (the audit trail's default actor) */
static std::string os_actor()
{
    std::string user;
    struct passwd *pw = getpwuid(geteuid());
    if (pw && pw->pw_name && *pw->pw_name) {
        user = pw->pw_name;
    } else if (!env("USER").empty()) {
        user = env("USER");
    } else {
        user = "uid" + std::to_string(geteuid());
    }

    char host[256];
    if (gethostname(host, sizeof(host)) != 0) {
        return user;
    }
    host[sizeof(host) - 1] = '\0';
    return user + "@" + host;
}


Context::Context(const Args &args)
{
    std::string url = args.has("redis") ? args.get("redis")
                                        : env("APIKEY_REDIS_URL");
    if (url.empty()) {
        url = kDefaultUrl;
    }
    url_ = parse_redis_url(url);

    /* TLS: each option, else its variable (named in messages as given) */
    struct {
        const char *opt;
        const char *var;
        std::string *value;
        std::string *from;
    } tls_opts[] = {
        {"tls-ca", "APIKEY_TLS_CA", &tls_.ca, &tls_.ca_from},
        {"tls-cert", "APIKEY_TLS_CERT", &tls_.cert, &tls_.cert_from},
        {"tls-key", "APIKEY_TLS_KEY", &tls_.key, &tls_.key_from},
        {"tls-name", "APIKEY_TLS_NAME", &tls_.name, &tls_.name_from},
    };
    for (auto &o : tls_opts) {
        if (args.has(o.opt)) {
            *o.value = args.get(o.opt);
            *o.from = std::string("--") + o.opt;
            if (o.value->empty()) {
                usage_error(*o.from + ": must not be empty");
            }
        } else {
            *o.value = env(o.var);
            /* a missing one is asked for by its option */
            *o.from = o.value->empty() ? std::string("--") + o.opt
                                       : std::string(o.var);
        }
    }
    if (args.has("tls-insecure")) {
        tls_.insecure = true;
        tls_.insecure_from = "--tls-insecure";
    } else {
        tls_.insecure = parse_bool_env(env("APIKEY_TLS_INSECURE"),
                                       "APIKEY_TLS_INSECURE");
        tls_.insecure_from = "APIKEY_TLS_INSECURE";
    }
    check_tls_options(url_, tls_);

    if (args.has("password-file")) {
        if (url_.has_password) {
            usage_error("the password is given twice: in the --redis URL "
                        "and with --password-file");
        }
        password_ = read_secret_file(args.get("password-file"),
                                     "--password-file");
    } else if (url_.has_password) {
        password_ = url_.password;
    } else {
        password_ = env("APIKEY_REDIS_PASSWORD");
    }

    if (!url_.user.empty() && password_.empty()) {
        /* the user is not echoed: redis://PASSWORD@host (a password
         * written without its ':') is read as a user */
        usage_error("the --redis URL names a user but no password: give "
                    "it in the URL (redis://user:password@host), with "
                    "--password-file or in APIKEY_REDIS_PASSWORD");
    }

    /* the sentinels' own password (AUTH), for redis-sentinel:// only */
    if (args.has("sentinel-password-file")) {
        if (url_.kind != RedisUrl::kSentinel) {
            usage_error("--sentinel-password-file is for a "
                        "redis-sentinel:// URL");
        }
        sentinel_password_ = read_secret_file(
            args.get("sentinel-password-file"), "--sentinel-password-file");
    } else if (url_.kind == RedisUrl::kSentinel) {
        sentinel_password_ = env("APIKEY_SENTINEL_PASSWORD");
    }

    prefix_ = args.has("prefix") ? args.get("prefix") : env("APIKEY_PREFIX");
    if (!args.has("prefix") && prefix_.empty()) {
        prefix_ = "apikey:";
    }
    if (has_control_chars(prefix_)) {
        usage_error("--prefix: control characters are not allowed");
    }
    if (!ak::redis_prefix_valid(prefix_)) {
        usage_error("--prefix " + quoted(prefix_) + ": \"{\" and \"}\" are "
                    "not allowed (the per-key names use the record's name as "
                    "their Redis Cluster hash tag)");
    }

    channel_ = args.has("channel") ? args.get("channel")
                                   : env("APIKEY_CHANNEL");
    if (!args.has("channel") && channel_.empty()) {
        channel_ = "apikey:events";
    }
    if (channel_.empty()) {
        usage_error("--channel: must not be empty");
    }

    std::string hash = args.has("hash") ? args.get("hash") : env("APIKEY_HASH");
    std::string secret_file = args.has("secret-file")
                                  ? args.get("secret-file")
                                  : env("APIKEY_SECRET_FILE");
    if (hash.empty()) {
        hash = "sha256";
    }

    hash_mode_ = hash;

    actor_ = args.has("actor") ? args.get("actor") : env("APIKEY_ACTOR");
    if (actor_.empty()) {
        actor_ = os_actor();
    }
    if (has_control_chars(actor_) || actor_.size() > 256) {
        usage_error("--actor: at most 256 characters, no control "
                    "characters");
    }

    if (hash == "sha256") {
        if (args.has("secret-file")) {
            usage_error("--secret-file is for --hash hmac-sha256 only");
        }
        hasher_.reset(new Hasher(AK_HASH_SHA256, std::string()));

    } else if (hash == "hmac-sha256") {
        if (secret_file.empty()) {
            usage_error("--hash hmac-sha256 needs --secret-file FILE (the "
                        "file of api_key_hash's secret_file=)");
        }
        SecretString secret(read_secret_file(secret_file, "--secret-file"));
        hasher_.reset(new Hasher(AK_HASH_HMAC_SHA256, secret.str()));

    } else {
        usage_error("--hash " + quoted(hash)
                    + ": expected sha256 or hmac-sha256");
    }

    timeout_s_ = 2.0;
    if (args.has("timeout")) {
        std::string t = args.get("timeout");
        char *end = nullptr;
        double v = std::strtod(t.c_str(), &end);
        if (t.empty() || end == nullptr || *end != '\0' || !(v >= 0.01)
            || v > 3600)
        {
            usage_error("--timeout " + quoted(t)
                        + ": expected seconds, 0.01 to 3600");
        }
        timeout_s_ = v;
    }
}


/* the hash of a record's hex name part (always one of ours: is_hex64) */
static void record_hash(const std::string &hex, unsigned char *hash)
{
    if (!is_hex64(hex)
        || ak_hex_decode_hash(hex.data(), hex.size(), hash) != 0)
    {
        fail(kExitInternal, "internal error: not a record hash: "
             + quoted(hex));
    }
}


std::string Context::record_key(const std::string &hex) const
{
    unsigned char hash[AK_HASH_LEN];
    record_hash(hex, hash);
    return ak::redis_record_name(prefix_, hash);
}


std::string Context::id_key(const std::string &id) const
{
    return ak::redis_id_name(prefix_, id);
}


std::string Context::usage_key(const std::string &hex,
                               const std::string &period,
                               int64_t window_start) const
{
    unsigned char hash[AK_HASH_LEN];
    record_hash(hex, hash);

    uint8_t p = period == "hour" ? AK_PERIOD_HOUR
                : period == "day" ? AK_PERIOD_DAY
                : period == "month" ? AK_PERIOD_MONTH
                : AK_PERIOD_NONE;

    std::string name = ak::redis_usage_name(prefix_, hash, p, window_start);
    if (name.empty()) {
        fail(kExitInternal, "internal error: no usage counter name for "
             + quoted(period));
    }
    return name;
}


std::string Context::requests_key(const std::string &hex, int64_t day) const
{
    unsigned char hash[AK_HASH_LEN];
    record_hash(hex, hash);
    return ak::redis_requests_name(prefix_, hash, day);
}


std::string Context::last_used_key(const std::string &hex) const
{
    unsigned char hash[AK_HASH_LEN];
    record_hash(hex, hash);
    return ak::redis_last_used_name(prefix_, hash);
}


Client &Context::redis()
{
    if (!redis_) {
        switch (url_.kind) {
        case RedisUrl::kSentinel:
            redis_ = connect_via_sentinels(url_, password_.str(),
                                           sentinel_password_.str(),
                                           timeout_s_, tls_);
            break;
        case RedisUrl::kCluster:
            redis_.reset(new ClusterClient(url_, password_.str(), timeout_s_,
                                           tls_));
            break;
        default:
            redis_.reset(new Redis(url_, password_.str(), timeout_s_, tls_));
        }
    }
    return *redis_;
}


/* ------------------------------------------------------------------ */
/* helpers                                                             */

static void expect_args(const Args &args, size_t min, size_t max,
                        const char *what)
{
    if (args.pos.size() < min) {
        usage_error(args.command + ": missing " + what + " (see apikeyctl "
                    + args.command + " --help)");
    }
    if (args.pos.size() > max) {
        usage_error(args.command + ": unexpected argument "
                    + (args.pos[max] == "-" || !key_is_checksum(args.pos[max])
                           ? quoted(args.pos[max]) : std::string("(a key)"))
                    + " (see apikeyctl " + args.command + " --help)");
    }
}


static Fields reply_to_fields(const redisReply *r)
{
    Fields f;

    if (r == nullptr || r->type != REDIS_REPLY_ARRAY) {
        return f;
    }

    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        f.emplace_back(reply_string(r->element[i]),
                       reply_string(r->element[i + 1]));
    }

    return f;
}


static Fields read_record(Client &r, const std::string &name)
{
    Reply rep = r.cmd({"HGETALL", name});
    return reply_to_fields(rep.get());
}


/*
 * Optimistic transaction: prepare() WATCHes what it reads and returns the
 * commands to run, or nothing to give up (after UNWATCH).  Retried when a
 * watched key changed meanwhile.  Returns EXEC's reply (nullptr if given up).
 */
using Prepare = std::function<std::optional<std::vector<Argv>>(Client &)>;

static Reply transact(Client &r, const Prepare &prepare)
{
    for (int attempt = 0; attempt < 16; attempt++) {
        std::optional<std::vector<Argv>> ops = prepare(r);

        if (!ops) {
            r.cmd({"UNWATCH"});
            return Reply();
        }

        r.append({"MULTI"});
        for (const Argv &op : *ops) {
            r.append(op);
        }
        r.append({"EXEC"});

        Reply multi = r.next();
        check_reply(multi.get(), "MULTI");

        std::string queue_error;
        for (const Argv &op : *ops) {
            Reply q = r.next();
            if (reply_is_error(q.get()) && queue_error.empty()) {
                queue_error = op[0] + ": " + reply_string(q.get());
            }
        }

        Reply exec = r.next();

        if (!queue_error.empty()) {
            fail(kExitRedis, "redis: " + printable(queue_error));
        }
        check_reply(exec.get(), "EXEC");

        if (exec->type == REDIS_REPLY_NIL) {
            continue;           /* a watched key changed: again */
        }

        if (exec->type != REDIS_REPLY_ARRAY) {
            fail(kExitRedis, "redis: EXEC: unexpected reply");
        }

        for (size_t i = 0; i < exec->elements; i++) {
            if (reply_is_error(exec->element[i])) {
                fail(kExitRedis, "redis: " + (*ops)[i][0] + ": "
                                 + printable(reply_string(exec->element[i])));
            }
        }

        return exec;
    }

    fail(kExitRedis, "redis: the record kept changing under us; try again");
}


/* The reply of the PUBLISH at index i of an EXEC answer.  On a cluster
 * the count is of one node's subscribers: no warning there. */
static void check_published(Context &ctx, const Reply &exec, size_t i)
{
    if (!exec || i >= exec->elements || ctx.redis().is_cluster()) {
        return;
    }
    const redisReply *p = exec->element[i];
    if (p->type == REDIS_REPLY_INTEGER && p->integer == 0) {
        note("warning: nobody listens on channel " + quoted(ctx.channel())
             + ": nginx caches see the change only when their ttl ends "
             "(check api_key_redis channel= and --channel)");
    }
}


static Argv hset_argv(const std::string &name, const Fields &fields)
{
    Argv a{"HSET", name};
    for (const Field &f : fields) {
        a.push_back(f.first);
        a.push_back(f.second);
    }
    return a;
}


static void flush_stdout_or_fail(const std::string &what)
{
    std::cout.flush();
    if (!std::cout) {
        fail(kExitInternal, "cannot write to stdout: " + what);
    }
}


static int64_t parse_expires_option(const std::string &value, int64_t now,
                                    const char *opt)
{
    int64_t t;
    std::string why;

    if (!parse_time(value, now, &t, &why)) {
        usage_error(std::string(opt) + " " + quoted(value) + ": " + why);
    }
    if (t != 0 && t <= now) {
        usage_error(std::string(opt) + " " + quoted(value) + ": "
                    + iso8601(t) + " is in the past");
    }
    return t;
}


/* unix seconds as "2027-01-31T12:00:00Z", else the text as it is */
static std::string time_text(const std::string &v)
{
    uint64_t t;
    if (parse_uint(v, UINT64_MAX / 2, &t) && t != 0) {
        return iso8601(static_cast<int64_t>(t));
    }
    return printable(v);
}


/* Checks one field alone, so that the message names the option. */
static void check_field(const char *opt, const std::string &field,
                        const std::string &value)
{
    std::string why = field_problem(field, value);
    if (!why.empty()) {
        usage_error(std::string(opt) + " " + quoted(value) + ": " + why);
    }
}


static std::string normalize_scopes(const std::string &s)
{
    std::string out;
    for (const std::string &w : split_ws(s)) {
        if (!out.empty()) {
            out.push_back(' ');
        }
        out += w;
    }
    return out;
}


/* ------------------------------------------------------------------ */
/* naming a key: KEY, ID, the record's 64-hex hash, or "-" (stdin)     */

struct Target {
    std::string hex;
    bool        exists = false;
    std::string via;        /* "id", "key" or "hash" */
    std::string id_arg;     /* the id, when via == "id" */
};


static Target resolve(Context &ctx, const std::string &given,
                      bool allow_dangling = false)
{
    SecretString arg(given == "-" ? read_stdin_line() : given);
    const std::string &a = arg.str();
    Client &r = ctx.redis();

    bool try_key = key_is_any(a);
    bool try_hash = is_hex64(a);
    bool checksum = key_is_checksum(a);
    std::string key_hex = try_key ? ctx.hasher().hex(a) : std::string();

    r.append({"GET", ctx.id_key(a)});
    if (try_key) {
        r.append({"EXISTS", ctx.record_key(key_hex)});
    }
    if (try_hash) {
        r.append({"EXISTS", ctx.record_key(a)});
    }

    Reply id_rep = r.next();
    Reply key_rep = try_key ? r.next() : Reply();
    Reply hash_rep = try_hash ? r.next() : Reply();

    check_reply(id_rep.get(), "GET");
    if (key_rep) {
        check_reply(key_rep.get(), "EXISTS");
    }
    if (hash_rep) {
        check_reply(hash_rep.get(), "EXISTS");
    }

    std::string id_hex;
    bool id_exists = false;

    if (id_rep->type == REDIS_REPLY_STRING) {
        id_hex = reply_string(id_rep.get());
        if (!is_hex64(id_hex)) {
            note("warning: " + ctx.id_key(printable(a)) + " holds no hash; "
                 "ignored");
            id_hex.clear();
        } else {
            Reply e = r.cmd({"EXISTS", ctx.record_key(id_hex)});
            id_exists = e->integer > 0;
        }
    }

    bool key_exists = key_rep && key_rep->integer > 0;
    bool hash_exists = hash_rep && hash_rep->integer > 0;

    Target t;
    t.exists = true;

    if (checksum && key_exists) {
        t.hex = key_hex;
        t.via = "key";
    } else if (id_exists) {
        t.hex = id_hex;
        t.via = "id";
        t.id_arg = a;
    } else if (key_exists) {
        t.hex = key_hex;
        t.via = "key";
    } else if (hash_exists) {
        t.hex = a;
        t.via = "hash";
    } else if (!id_hex.empty()) {
        if (allow_dangling) {
            t.hex = id_hex;
            t.via = "id";
            t.id_arg = a;
            t.exists = false;
            return t;
        }
        fail(kExitNotFound, "id " + quoted(a) + " names a record that no "
             "longer exists (hash " + id_hex + "); \"apikeyctl delete "
             + printable(a) + "\" removes the id");
    } else {
        fail(kExitNotFound, "no such key or id");
    }

    return t;
}


static Target resolve_arg(Context &ctx, const Args &args,
                          bool allow_dangling = false)
{
    return resolve(ctx, args.pos[0], allow_dangling);
}


/* ------------------------------------------------------------------ */
/* create                                                              */

namespace {

struct NewKey {
    SecretString key;
    std::string  hex;
    std::string  id;
};

} // namespace


/*
 * Prints the new key: the only time it is ever shown.  Returns false when it
 * could not be written (closed pipe, full disk): the caller must act, since
 * nobody will ever know that key.
 */
static bool print_new_key(const Args &args, const NewKey &nk,
                          const std::string &extra_json)
{
    /* a closed stdout must be an error we can handle, not a silent death */
    std::signal(SIGPIPE, SIG_IGN);

    if (args.has("json")) {
        std::cout << "{\"key\":" << json_quote(nk.key.str())
                  << ",\"id\":" << json_quote(nk.id)
                  << ",\"hash\":" << json_quote(nk.hex) << extra_json
                  << "}\n";
    } else {
        std::cout << nk.key.str() << '\n';
    }

    std::cout.flush();
    return static_cast<bool>(std::cout);
}


/*
 * create and rotate: draws into nk a new key, its hash and its id (--id, else the hash's
 * first digits).  Each attempt draws a new key; the eighth gives up (the
 * default id, or the hash, kept colliding with other keys).
 */
static void new_key(NewKey &nk, Context &ctx, const Args &args,
                    const std::string &given_id,
                    const std::string &key_prefix, int attempt)
{
    if (attempt == 8) {
        fail(kExitInternal, "could not find an unused default id; "
                            "give one with --id");
    }

    nk.key = generate_key(key_prefix);
    nk.hex = ctx.hasher().hex(nk.key.str());
    nk.id = args.has("id") ? given_id : nk.hex.substr(0, AK_ID_DEFAULT_LEN);
}


/* After a transaction that did not run: whether to draw another key. */
static void retry_new_key(const Args &args, const std::string &given_id,
                          bool id_taken, bool collision, const char *cmd)
{
    if (id_taken && args.has("id")) {
        usage_error("--id " + quoted(given_id) + ": already in use by "
                    "another key");
    }
    if (!id_taken && !collision) {
        fail(kExitInternal, std::string(cmd) + ": transaction given up");
    }
}


int cmd_create(Context &ctx, const Args &args)
{
    expect_args(args, 0, 0, "");

    const int64_t now = unix_now();
    Fields attrs;        /* validated, in the record's order */

    auto text = [&](const char *opt, const char *field) {
        if (args.has(opt + 2) && !args.get(opt + 2).empty()) {
            std::string v = args.get(opt + 2);
            check_field(opt, field, v);
            attrs.emplace_back(field, v);
        }
    };

    text("--owner", "owner");
    text("--plan", "plan");
    attrs.emplace_back("status", "active");

    if (args.has("expires")) {
        int64_t t = parse_expires_option(args.get("expires"), now,
                                         "--expires");
        if (t != 0) {
            attrs.emplace_back("expires_at", std::to_string(t));
        }
    }

    if (args.has("scopes")) {
        std::string v = normalize_scopes(args.get("scopes"));
        if (!v.empty()) {
            check_field("--scopes", "scopes", v);
            attrs.emplace_back("scopes", v);
        }
    }

    text("--ips", "ips");
    text("--referrers", "referrers");
    text("--rate", "rate");
    text("--burst", "burst");
    text("--rate-scope", "rate_scope");
    text("--quota", "quota");

    if (args.has("burst") && !args.has("rate")) {
        usage_error("--burst needs --rate");
    }
    if (args.has("rate-scope") && !args.has("rate")) {
        usage_error("--rate-scope needs --rate");
    }

    std::string given_id = args.get("id");
    if (args.has("id")) {
        check_field("--id", "id", given_id);
    }

    std::string key_prefix = args.get("key-prefix", kDefaultKeyPrefix);
    if (!key_prefix_valid(key_prefix)) {
        usage_error("--key-prefix " + quoted(key_prefix)
                    + ": expected 1 to 32 of A-Z a-z 0-9 _");
    }

    Client &r = ctx.redis();
    ctx.check_marker();
    NewKey nk;
    Fields rec;

    for (int attempt = 0;; attempt++) {
        new_key(nk, ctx, args, given_id, key_prefix, attempt);

        rec = Fields{{"id", nk.id}};
        rec.insert(rec.end(), attrs.begin(), attrs.end());
        rec.emplace_back("created_at", std::to_string(now));
        rec.emplace_back("key_prefix", key_prefix);

        std::string why = record_problem(nk.hex, rec);
        if (!why.empty()) {
            usage_error("create: " + why);
        }

        const std::string rec_key = ctx.record_key(nk.hex);
        const std::string id_key = ctx.id_key(nk.id);
        bool id_taken = false, collision = false;

        Reply exec = transact(r, [&](Client &rr)
                                     -> std::optional<std::vector<Argv>> {
            rr.cmd({"WATCH", rec_key, id_key});
            rr.append({"EXISTS", id_key});
            rr.append({"EXISTS", rec_key});
            Reply a = rr.next(), b = rr.next();
            check_reply(a.get(), "EXISTS");
            check_reply(b.get(), "EXISTS");

            if (a->integer > 0) {
                id_taken = true;
                return std::nullopt;
            }
            if (b->integer > 0) {
                collision = true;
                return std::nullopt;
            }

            /* the id first: on a cluster (one MULTI/EXEC per slot, in
             * this order) the id is claimed before the record appears */
            return std::vector<Argv>{{"SET", id_key, nk.hex},
                                     hset_argv(rec_key, rec)};
        });

        if (exec) {
            break;
        }
        retry_new_key(args, given_id, id_taken, collision, "create");
        /* default id or hash collision: another key */
    }

    if (!print_new_key(args, nk, "")) {
        /* the key is lost: a record nobody can use must not stay */
        Reply undo = r.cmd_raw({"DEL", ctx.record_key(nk.hex),
                                ctx.id_key(nk.id)});
        fail(kExitInternal,
             std::string("cannot write the key to stdout; ")
             + (reply_is_error(undo.get())
                    ? "remove its record with \"apikeyctl delete "
                      + printable(nk.id) + "\""
                    : "its record was removed again"));
    }

    audit(ctx, "create", nk.id, nk.hex, Fields(), rec);
    note("created key id " + quoted(nk.id) + ", hash " + nk.hex
         + " (the key is shown once and stored nowhere)");
    return kExitOk;
}


/* ------------------------------------------------------------------ */
/* revoke                                                              */

bool revoke_record(Context &ctx, const std::string &hex,
                   const std::string &reason, std::string *id,
                   std::string *was, Fields *before, Fields *after)
{
    Client &r = ctx.redis();
    const std::string rec_key = ctx.record_key(hex);
    bool gone = false;

    Reply exec = transact(r, [&](Client &rr)
                                 -> std::optional<std::vector<Argv>> {
        rr.cmd({"WATCH", rec_key});
        Fields f = read_record(rr, rec_key);
        if (f.empty()) {
            gone = true;
            return std::nullopt;
        }
        *id = record_id(hex, f);
        *was = field_value(f, "status");

        Fields change{{"status", "revoked"},
                      {"revoked_at", std::to_string(unix_now())},
                      {"revoked_by", ctx.actor()}};
        if (!reason.empty()) {
            change.emplace_back("reason", reason);
        }
        before->clear();
        for (const Field &c : change) {
            bool had;
            std::string v = field_value(f, c.first, &had);
            if (had) {
                before->emplace_back(c.first, v);
            }
        }
        *after = change;

        Argv hdel{"HDEL", rec_key, "reason"};
        std::vector<Argv> ops{hset_argv(rec_key, change)};
        if (reason.empty() && !field_value(f, "reason").empty()) {
            ops.push_back(hdel);    /* an earlier revocation's reason */
            after->emplace_back("reason", "");
        }
        ops.push_back({"PUBLISH", ctx.channel(), "revoke " + hex});
        return ops;
    });

    if (gone) {
        return false;
    }
    check_published(ctx, exec, exec->elements - 1);
    return true;
}


int cmd_revoke(Context &ctx, const Args &args)
{
    expect_args(args, 1, 1, "KEY or ID");

    const std::string reason = args.get("reason");
    if (has_control_chars(reason) || reason.size() > 1024) {
        usage_error("--reason: at most 1024 characters, no control "
                    "characters");
    }

    Target t = resolve_arg(ctx, args);
    ctx.check_marker();
    std::string id, was;
    Fields before, after;

    if (!revoke_record(ctx, t.hex, reason, &id, &was, &before, &after)) {
        fail(kExitNotFound, "no such key or id (deleted meanwhile)");
    }
    audit(ctx, "revoke", id, t.hex, before, after, reason);

    /* the key's old secrets still in their grace (aliases) go with it */
    {
        Client &r = ctx.redis();
        std::string prev = field_value(
            read_record(r, ctx.record_key(t.hex)), "rotated_from");
        const int64_t now = unix_now();
        for (int depth = 0; depth < 16 && is_hex64(prev); depth++) {
            Fields pf = read_record(r, ctx.record_key(prev));
            uint64_t until = 0;
            if (parse_uint(field_value(pf, "alias_until"), UINT64_MAX / 2,
                           &until)
                && static_cast<int64_t>(until) > now
                && field_value(pf, "status") != "revoked")
            {
                std::string pid, pwas;
                Fields pb, pa;
                if (revoke_record(ctx, prev, reason, &pid, &pwas, &pb, &pa)) {
                    audit(ctx, "revoke", pid, prev, pb, pa, reason);
                    note("revoked its old secret (hash " + prev + "), an "
                         "alias until " + iso8601(static_cast<int64_t>(until)));
                }
            }
            prev = field_value(pf, "rotated_from");
        }
    }

    note(std::string(was == "revoked" ? "key was already revoked: " : "")
         + "revoked key id " + quoted(id) + ", hash " + t.hex);
    if (args.has("json")) {
        std::cout << "{\"id\":" << json_quote(id) << ",\"hash\":"
                  << json_quote(t.hex) << ",\"status\":\"revoked\""
                  << ",\"was\":" << json_quote(was.empty() ? "active" : was)
                  << ",\"reason\":" << json_quote(reason) << "}\n";
        flush_stdout_or_fail("revoke");
    }
    return kExitOk;
}


/* ------------------------------------------------------------------ */
/* rotate                                                              */

int cmd_rotate(Context &ctx, const Args &args)
{
    expect_args(args, 1, 1, "KEY or ID");

    const int64_t now = unix_now();

    if (!args.has("grace")) {
        usage_error("rotate: --grace is required: how long the old key keeps "
                    "working, e.g. --grace 24h (--grace 0 ends it now)");
    }

    int64_t grace;
    if (!parse_duration(args.get("grace"), &grace)) {
        usage_error("--grace " + quoted(args.get("grace"))
                    + ": expected a duration such as 30m, 24h, 7d or "
                    "seconds");
    }

    std::string key_prefix = args.get("key-prefix");
    if (args.has("key-prefix") && !key_prefix_valid(key_prefix)) {
        usage_error("--key-prefix " + quoted(key_prefix)
                    + ": expected 1 to 32 of A-Z a-z 0-9 _");
    }

    std::string given_id = args.get("id");
    if (args.has("id")) {
        check_field("--id", "id", given_id);
    }

    std::optional<int64_t> new_expires;
    if (args.has("expires")) {
        new_expires = parse_expires_option(args.get("expires"), now,
                                           "--expires");
    }

    Target t = resolve_arg(ctx, args);
    Client &r = ctx.redis();
    ctx.check_marker();
    const std::string old_key = ctx.record_key(t.hex);

    /* the new key keeps the old one's prefix (stored by create), so that
     * "api_key_format checksum prefix=..." accepts it too */
    if (!args.has("key-prefix")) {
        Reply kp = r.cmd({"HGET", old_key, "key_prefix"});
        key_prefix = reply_string(kp.get());
        if (!key_prefix_valid(key_prefix)) {
            key_prefix = kDefaultKeyPrefix;
        }
    }

    /* the new key keeps the id (--id gives another) */
    std::string keep_id = given_id;
    if (!args.has("id")) {
        Fields cur = read_record(r, old_key);
        keep_id = record_id(t.hex, cur);
    }

    NewKey nk;
    std::string old_id, identity;
    Fields audit_old;
    int64_t old_until = 0;

    std::string new_key_name;

    for (int attempt = 0;; attempt++) {
        new_key(nk, ctx, args, keep_id, key_prefix, attempt);
        nk.id = keep_id;
        new_key_name = ctx.record_key(nk.hex);

        const std::string new_key = ctx.record_key(nk.hex);
        const std::string id_key = ctx.id_key(nk.id);
        bool gone = false, id_taken = false, collision = false;

        Reply exec = transact(r, [&](Client &rr)
                                     -> std::optional<std::vector<Argv>> {
            rr.cmd({"WATCH", old_key, new_key, id_key});

            Fields old = read_record(rr, old_key);
            if (old.empty()) {
                gone = true;
                return std::nullopt;
            }
            old_id = record_id(t.hex, old);

            if (!field_value(old, "alias_until").empty()) {
                usage_error("rotate: this is the old secret of a rotated "
                            "key (an alias until "
                            + time_text(field_value(old, "alias_until"))
                            + "); rotate the current one: "
                            "\"apikeyctl rotate " + printable(old_id)
                            + "\"");
            }

            rr.append({"GET", id_key});
            rr.append({"EXISTS", new_key});
            Reply a = rr.next(), b = rr.next();
            check_reply(a.get(), "GET");
            check_reply(b.get(), "EXISTS");

            if (a->type == REDIS_REPLY_STRING
                && reply_string(a.get()) != t.hex)
            {
                id_taken = true;        /* taken by a third key */
                return std::nullopt;
            }
            if (b->integer > 0) {
                collision = true;
                return std::nullopt;
            }

            bool has_exp;
            std::string exp_s = field_value(old, "expires_at", &has_exp);
            uint64_t old_exp = 0;
            if (has_exp && !exp_s.empty()
                && !parse_uint(exp_s, UINT64_MAX / 2, &old_exp))
            {
                usage_error("rotate: the key's expires_at "
                            + quoted(exp_s) + " is malformed; fix it with "
                            "\"apikeyctl set\" first");
            }

            /* the old secret is an alias until now + grace (the module
             * refuses it as revoked from then on), never past its expiry */
            old_until = now + grace;
            if (old_exp != 0 && static_cast<int64_t>(old_exp) < old_until) {
                old_until = static_cast<int64_t>(old_exp);
            }

            /* the identity: the first secret's hash, kept by every
             * rotation, so that the quota counters stay the key's */
            identity = field_value(old, "identity");
            if (identity.empty()) {
                identity = t.hex;
            }

            /* the new record: the same id and attributes */
            Fields rec{{"id", nk.id}};
            for (const std::string &name : module_fields()) {
                bool present;
                std::string v = field_value(old, name, &present);
                if (!present || name == "id" || name == "expires_at"
                    || name == "identity" || name == "alias_until")
                {
                    continue;
                }
                if (name == "status" && v == "revoked") {
                    v = "active";   /* the replacement of a revoked key */
                }
                rec.emplace_back(name, v);
            }
            rec.emplace_back("identity", identity);

            int64_t exp = 0;
            if (new_expires) {
                exp = *new_expires;
            } else if (old_exp != 0) {
                if (static_cast<int64_t>(old_exp) <= now) {
                    usage_error("rotate: the key expired at "
                                + iso8601(static_cast<int64_t>(old_exp))
                                + "; give the new key's expiry with "
                                "--expires (or --expires never)");
                }
                exp = static_cast<int64_t>(old_exp);
            }
            if (exp != 0) {
                rec.emplace_back("expires_at", std::to_string(exp));
            }

            for (const Field &f : old) {   /* operator's own fields */
                if (!is_module_field(f.first)
                    && std::find(tool_fields().begin(), tool_fields().end(),
                                 f.first) == tool_fields().end())
                {
                    rec.push_back(f);
                }
            }
            rec.emplace_back("created_at", std::to_string(now));
            rec.emplace_back("key_prefix", key_prefix);
            rec.emplace_back("rotated_from", t.hex);

            std::string why = record_problem(nk.hex, rec);
            if (!why.empty()) {
                usage_error("rotate: the key's record is not valid, fix it "
                            "with \"apikeyctl set\" first: " + why);
            }

            Fields old_change{{"alias_until", std::to_string(old_until)},
                              {"identity", identity},
                              {"rotated_to", nk.hex}};
            audit_old = old;

            /* the id first, as in create */
            return std::vector<Argv>{
                {"SET", id_key, nk.hex},
                hset_argv(new_key, rec),
                hset_argv(old_key, old_change),
                {"PUBLISH", ctx.channel(), "update " + t.hex}};
        });

        if (gone) {
            fail(kExitNotFound, "no such key or id (deleted meanwhile)");
        }
        if (exec) {
            check_published(ctx, exec, 3);
            break;
        }
        if (id_taken && !args.has("id")) {
            usage_error("rotate: the id " + quoted(keep_id) + " names "
                        "another key; give the new key's id with --id");
        }
        retry_new_key(args, given_id, id_taken, collision, "rotate");
    }

    std::string extra = ",\"old_id\":" + json_quote(old_id)
                        + ",\"old_hash\":" + json_quote(t.hex)
                        + ",\"old_expires_at\":" + std::to_string(old_until)
                        + ",\"alias_until\":" + std::to_string(old_until);
    if (!print_new_key(args, nk, extra)) {
        /* nobody will ever know the new key: undo the rotation */
        Argv hdel{"HDEL", old_key, "alias_until", "rotated_to"};
        if (field_value(audit_old, "identity").empty()) {
            hdel.push_back("identity");
        }
        bool undone = true;
        for (const Argv &a : std::vector<Argv>{
                 {"SET", ctx.id_key(nk.id), t.hex}, hdel,
                 {"DEL", new_key_name},
                 {"PUBLISH", ctx.channel(), "update " + t.hex},
                 {"PUBLISH", ctx.channel(), "update " + nk.hex}}) {
            if (a[0] == "SET" && nk.id != old_id) {
                continue;           /* --id: the old id never moved */
            }
            Reply u = r.cmd_raw(a);
            undone = undone && !reply_is_error(u.get());
        }
        fail(kExitInternal,
             std::string("cannot write the new key to stdout; ")
             + (undone ? "the rotation was undone (the old key is as before)"
                       : "undoing it failed: the old key (hash " + t.hex
                         + ") is an alias until " + iso8601(old_until)
                         + "; \"apikeyctl set " + t.hex
                         + " alias_until=\" ends that"));
    }

    audit(ctx, "rotate", nk.id, nk.hex,
          Fields{{"hash", t.hex}, {"id", old_id}},
          Fields{{"hash", nk.hex}, {"id", nk.id},
                 {"old_alias_until", std::to_string(old_until)}});
    note("rotated key id " + quoted(old_id)
         + (nk.id == old_id ? "" : " to id " + quoted(nk.id))
         + ": new hash " + nk.hex + "; the old key works until "
         + iso8601(old_until) + " (the new key is shown once)");
    return kExitOk;
}


/* ------------------------------------------------------------------ */
/* set                                                                 */

int cmd_set(Context &ctx, const Args &args)
{
    if (args.pos.size() < 2) {
        usage_error("set: expected KEY|ID field=value... (see apikeyctl set "
                    "--help)");
    }

    const int64_t now = unix_now();
    Fields changes;                 /* value "" = delete */
    std::set<std::string> seen;

    for (size_t i = 1; i < args.pos.size(); i++) {
        const std::string &a = args.pos[i];
        size_t eq = a.find('=');
        if (eq == std::string::npos || eq == 0) {
            usage_error("set: expected field=value, not " + quoted(a));
        }

        std::string name = a.substr(0, eq);
        std::string value = a.substr(eq + 1);

        if (name == "expires") {
            name = "expires_at";
        }

        if (!is_module_field(name)) {
            std::string all;
            for (const std::string &f : module_fields()) {
                all += (all.empty() ? "" : ", ") + f;
            }
            usage_error("set: unknown field " + quoted(name)
                        + "; fields: " + all);
        }

        if (!seen.insert(name).second) {
            usage_error("set: field " + quoted(name) + " given twice");
        }

        if (name == "id" && value.empty()) {
            usage_error("set: field \"id\" cannot be removed; give a new id");
        }

        if (name == "identity") {
            usage_error("set: field \"identity\" is kept by rotate (the "
                        "key's quota counters); it cannot be set");
        }

        if ((name == "expires_at" || name == "alias_until")
            && !value.empty())
        {
            int64_t t;
            std::string why;
            if (!parse_time(value, now, &t, &why)) {
                usage_error("set: field " + quoted(name) + " "
                            + quoted(value) + ": " + why);
            }
            value = t == 0 ? std::string() : std::to_string(t);
        }

        if (name == "scopes") {
            value = normalize_scopes(value);
        }

        if (!value.empty()) {
            std::string why = field_problem(name, value);
            if (!why.empty()) {
                usage_error("set: " + why);
            }
        }

        changes.emplace_back(name, value);
    }

    Target t = resolve_arg(ctx, args);
    Client &r = ctx.redis();
    ctx.check_marker();
    const std::string rec_key = ctx.record_key(t.hex);
    std::string id;
    bool gone = false, id_taken = false;
    bool revoking = false;
    Fields set_before;

    Reply exec = transact(r, [&](Client &rr)
                                 -> std::optional<std::vector<Argv>> {
        std::string new_id = field_value(changes, "id");

        if (!new_id.empty()) {
            rr.cmd({"WATCH", rec_key, ctx.id_key(new_id)});
        } else {
            rr.cmd({"WATCH", rec_key});
        }

        Fields old = read_record(rr, rec_key);
        if (old.empty()) {
            gone = true;
            return std::nullopt;
        }
        id = record_id(t.hex, old);
        set_before = old;

        /* the record after the change, checked as a whole */
        Fields merged;
        for (const Field &f : old) {
            bool changed;
            field_value(changes, f.first, &changed);
            if (!changed) {
                merged.push_back(f);
            }
        }
        Fields to_set;
        Argv hdel{"HDEL", rec_key};

        for (const Field &c : changes) {
            if (c.second.empty()) {
                hdel.push_back(c.first);
            } else {
                merged.push_back(c);
                to_set.push_back(c);
            }
        }

        std::string why = record_problem(t.hex, merged);
        if (!why.empty()) {
            usage_error("set: " + why);
        }

        std::vector<Argv> ops;

        if (!to_set.empty()) {
            ops.push_back(hset_argv(rec_key, to_set));
        }
        if (hdel.size() > 2) {
            ops.push_back(hdel);
        }

        if (!new_id.empty() && new_id != id) {
            Reply g = rr.cmd({"GET", ctx.id_key(new_id)});
            if (g->type == REDIS_REPLY_STRING
                && reply_string(g.get()) != t.hex)
            {
                id_taken = true;
                return std::nullopt;
            }
            ops.push_back({"SET", ctx.id_key(new_id), t.hex});

            /* move the old id's lookup, if it is ours */
            rr.cmd({"WATCH", ctx.id_key(id)});
            Reply o = rr.cmd({"GET", ctx.id_key(id)});
            if (reply_string(o.get()) == t.hex) {
                ops.push_back({"DEL", ctx.id_key(id)});
            }
        }

        /* re-activated: the last revocation's fields go (the audit trail
         * keeps them) */
        if (field_value(changes, "status") == "active") {
            Argv clear{"HDEL", rec_key};
            for (const char *f : {"revoked_at", "revoked_by", "reason"}) {
                if (!field_value(old, f).empty()) {
                    clear.push_back(f);
                }
            }
            if (clear.size() > 2) {
                ops.push_back(clear);
            }
        }

        std::string status = field_value(changes, "status", &revoking);
        revoking = revoking && (status == "revoked" || status == "disabled");
        if (revoking) {
            ops.push_back({"PUBLISH", ctx.channel(), "revoke " + t.hex});
        }
        ops.push_back({"PUBLISH", ctx.channel(), "update " + t.hex});
        return ops;
    });

    if (gone) {
        fail(kExitNotFound, "no such key or id (deleted meanwhile)");
    }
    if (id_taken) {
        usage_error("set: id " + quoted(field_value(changes, "id"))
                    + " is already in use by another key");
    }

    check_published(ctx, exec, exec->elements - 1);

    {
        Fields before;
        for (const Field &c : changes) {
            bool had;
            std::string v = field_value(set_before, c.first, &had);
            if (had) {
                before.emplace_back(c.first, v);
            }
        }
        audit(ctx, "set", field_value(changes, "id").empty()
                              ? id : field_value(changes, "id"),
              t.hex, before, changes);
    }

    std::string set_list, del_list, set_json, del_json;
    for (const Field &c : changes) {
        std::string &l = c.second.empty() ? del_list : set_list;
        l += (l.empty() ? "" : ", ") + c.first;
        std::string &j = c.second.empty() ? del_json : set_json;
        j += (j.empty() ? "" : ",") + json_quote(c.first);
    }
    note("updated key id " + quoted(id)
         + (set_list.empty() ? "" : ": set " + set_list)
         + (del_list.empty() ? "" : (set_list.empty() ? ": " : "; ")
                                    + std::string("removed ") + del_list));
    if (args.has("json")) {
        std::cout << "{\"id\":" << json_quote(id) << ",\"hash\":"
                  << json_quote(t.hex) << ",\"set\":[" << set_json
                  << "],\"removed\":[" << del_json << "]}\n";
        flush_stdout_or_fail("set");
    }
    return kExitOk;
}


/* ------------------------------------------------------------------ */
/* show                                                                */

static std::string time_note(const std::string &v, int64_t now,
                             bool expiry)
{
    uint64_t t;
    if (!parse_uint(v, UINT64_MAX / 2, &t)) {
        return "";
    }
    if (t == 0) {
        return expiry ? " (never)" : "";
    }
    std::string s = " (" + iso8601(static_cast<int64_t>(t));
    if (expiry && static_cast<int64_t>(t) <= now) {
        s += ", expired";
    }
    return s + ")";
}


static std::string fields_json(const Fields &f)
{
    std::string out = "{";
    for (size_t i = 0; i < f.size(); i++) {
        out += (i ? "," : "") + json_quote(f[i].first) + ":"
               + json_quote(f[i].second);
    }
    return out + "}";
}


/* Known fields first, in the module's order, then the rest by name. */
static Fields ordered(const Fields &f)
{
    Fields out;
    for (const std::string &name : module_fields()) {
        bool present;
        std::string v = field_value(f, name, &present);
        if (present) {
            out.emplace_back(name, v);
        }
    }
    Fields rest;
    for (const Field &x : f) {
        if (!is_module_field(x.first)) {
            rest.push_back(x);
        }
    }
    std::sort(rest.begin(), rest.end());
    out.insert(out.end(), rest.begin(), rest.end());
    return out;
}


/*
 * How many requests a valid record's rate admits at once: burst + 1, the
 * burst being the record's or, without a burst field, the module's
 * default (a bucket of N).  False without a rate.
 */
static bool rate_at_once(const Fields &f, uint64_t *at_once, bool *explicit_burst)
{
    std::string rate = field_value(f, "rate");
    size_t slash = rate.find('/');
    if (rate.empty() || slash == 0 || slash == std::string::npos) {
        return false;
    }

    uint64_t n = std::strtoull(rate.substr(0, slash).c_str(), nullptr, 10);
    std::string burst = field_value(f, "burst");

    *explicit_burst = !burst.empty();
    *at_once = (*explicit_burst
                    ? std::strtoull(burst.c_str(), nullptr, 10)
                    : ak_rate_default_burst(n)) + 1;
    return true;
}


/*
 * The last use the module's usage flush wrote (unix seconds), -1 when none
 * (never used since usage_flush was on, or not for 400 days: it expired).
 */
int64_t parse_last_used(const redisReply *r)
{
    uint64_t v;
    if (r == nullptr || r->type != REDIS_REPLY_STRING
        || !parse_uint(reply_string(r), UINT64_MAX / 2, &v) || v == 0)
    {
        return -1;
    }
    return static_cast<int64_t>(v);
}


static std::string last_used_text(int64_t t, int64_t now)
{
    if (t < 0) {
        return "never (or not in the last 400 days)";
    }
    int64_t ago = now > t ? now - t : 0;
    std::string rel = ago < 120 ? std::to_string(ago) + "s ago"
                      : ago < 7200 ? std::to_string(ago / 60) + "m ago"
                      : ago < 2 * 86400 ? std::to_string(ago / 3600) + "h ago"
                      : std::to_string(ago / 86400) + "d ago";
    return iso8601(t) + " (" + rel + ")";
}


int cmd_show(Context &ctx, const Args &args)
{
    expect_args(args, 1, 1, "KEY or ID");

    Target t = resolve_arg(ctx, args);
    Client &r = ctx.redis();
    Fields f = ordered(read_record(r, ctx.record_key(t.hex)));
    if (f.empty()) {
        fail(kExitNotFound, "no such key or id (deleted meanwhile)");
    }

    std::string id = record_id(t.hex, f);
    Reply lk = r.cmd({"GET", ctx.id_key(id)});
    bool lookup_ok = reply_string(lk.get()) == t.hex;
    std::string problem = record_problem(t.hex, f);
    /* the last use is the identity's (kept across rotations) */
    std::string usage_hex = field_value(f, "identity");
    if (!is_hex64(usage_hex)) {
        usage_hex = t.hex;
    }
    Reply lu = r.cmd({"GET", ctx.last_used_key(usage_hex)});
    const int64_t last_used = parse_last_used(lu.get());

    if (args.has("json")) {
        std::cout << "{\"id\":" << json_quote(id) << ",\"hash\":"
                  << json_quote(t.hex) << ",\"fields\":" << fields_json(f)
                  << ",\"id_lookup\":" << (lookup_ok ? "true" : "false")
                  << ",\"valid\":" << (problem.empty() ? "true" : "false");
        if (!problem.empty()) {
            std::cout << ",\"problem\":" << json_quote(problem);
        }
        uint64_t at_once;
        bool explicit_burst;
        if (problem.empty() && rate_at_once(f, &at_once, &explicit_burst)) {
            std::cout << ",\"rate_at_once\":" << at_once;
        }
        std::cout << ",\"last_used\":"
                  << (last_used < 0 ? std::string("null")
                                    : std::to_string(last_used));
        std::cout << "}\n";
        flush_stdout_or_fail("show");
        return kExitOk;
    }

    const int64_t now = unix_now();
    size_t w = 9;       /* "last_used" */
    for (const Field &x : f) {
        w = std::max(w, x.first.size());
    }

    auto line = [&](const std::string &k, const std::string &v) {
        std::cout << k << std::string(w + 2 - k.size(), ' ') << v << '\n';
    };

    line("id", printable(id) + (field_value(f, "id").empty() ? " (default)"
                                                              : "")
               + (lookup_ok ? "" : " (no id lookup: name it by key or "
                                   "hash)"));
    line("hash", t.hex);

    bool has_status;
    field_value(f, "status", &has_status);
    if (!has_status) {
        line("status", "active (default)");
    }

    for (const Field &x : f) {
        if (x.first == "id") {
            continue;
        }
        std::string v = printable(x.second);
        if (x.first == "expires_at") {
            v += time_note(x.second, now, true);
        } else if (x.first == "alias_until") {
            /* an old secret of a rotated key */
            v += time_note(x.second, now, false) + " (an old secret: "
                 + effective_status(f, now) + ")";
        } else if (x.first == "created_at" || x.first == "revoked_at"
                   || x.first == "imported_at")
        {
            v += time_note(x.second, now, false);
        } else if (x.first == "rate" && problem.empty()) {
            uint64_t at_once;
            bool explicit_burst;
            if (rate_at_once(f, &at_once, &explicit_burst)) {
                v += " (" + std::to_string(at_once) + " at once, "
                     + (explicit_burst ? "then one per period / N: burst)"
                                       : "refilled at the rate: no burst "
                                         "field)");
            }
        }
        line(x.first, v);
    }

    line("last_used", last_used_text(last_used, now));

    if (!problem.empty()) {
        line("WARNING", "the module rejects this record (bad_record): "
                        + printable(problem));
    }

    flush_stdout_or_fail("show");
    return kExitOk;
}


/* ------------------------------------------------------------------ */
/* list                                                                */

int cmd_list(Context &ctx, const Args &args)
{
    expect_args(args, 0, 0, "");

    uint64_t page = 1000;
    if (args.has("page-size")
        && (!parse_uint(args.get("page-size"), 100000, &page) || page == 0))
    {
        usage_error("--page-size " + quoted(args.get("page-size"))
                    + ": expected 1 to 100000");
    }

    std::string want_status = args.get("status");
    static const std::set<std::string> statuses = {
        "active", "revoked", "disabled", "expired", "expiring", "alias",
        "rotated",
    };
    if (args.has("status") && !statuses.count(want_status)) {
        usage_error("--status " + quoted(want_status)
                    + ": expected active, revoked, disabled, expired, "
                      "expiring, alias or rotated");
    }

    int64_t unused = -1;
    if (args.has("unused")
        && (!parse_duration(args.get("unused"), &unused) || unused <= 0))
    {
        usage_error("--unused " + quoted(args.get("unused"))
                    + ": expected a duration such as 90d (s, m, h, d, w)");
    }

    const bool json = args.has("json");
    const int64_t now = unix_now();

    int64_t within = 30 * 86400;
    if (args.has("within")) {
        if (want_status != "expiring") {
            usage_error("--within is for --status expiring");
        }
        if (!parse_duration(args.get("within"), &within) || within <= 0) {
            usage_error("--within " + quoted(args.get("within"))
                        + ": expected a duration such as 7d, 30d, 12h");
        }
    }
    const std::string &prefix = ctx.prefix();
    const std::string pattern = ak::redis_records_pattern(prefix);

    Client &r = ctx.redis();
    std::unordered_set<std::string> seen;
    std::vector<std::string> batch;
    uint64_t shown = 0;

    if (json) {
        std::cout << "[";
    }

    auto flush = [&]() {
        std::vector<Reply> reps;
        std::vector<int64_t> lus(batch.size(), -1);

        for (const std::string &name : batch) {
            r.append({"HGETALL", name});
        }
        for (size_t i = 0; i < batch.size(); i++) {
            reps.push_back(r.next());
        }

        /* the last use is the identity's (kept across rotations): known
         * once the record is read */
        if (unused > 0) {
            for (size_t i = 0; i < batch.size(); i++) {
                std::string hex = batch[i].substr(prefix.size());
                if (!reply_is_error(reps[i].get())) {
                    std::string ident = field_value(
                        reply_to_fields(reps[i].get()), "identity");
                    if (is_hex64(ident)) {
                        hex = ident;
                    }
                }
                r.append({"GET", ctx.last_used_key(hex)});
            }
            for (size_t i = 0; i < batch.size(); i++) {
                Reply lu = r.next();
                lus[i] = parse_last_used(lu.get());
            }
        }

        for (size_t i = 0; i < batch.size(); i++) {
            const std::string &name = batch[i];
            Reply &rep = reps[i];
            int64_t last_used = lus[i];
            if (unused > 0 && last_used >= 0 && now - last_used < unused) {
                continue;           /* used within --unused */
            }
            if (reply_is_error(rep.get())) {
                note("warning: skipping " + quoted(name) + ": "
                     + printable(reply_string(rep.get())));
                continue;
            }

            Fields f = reply_to_fields(rep.get());
            if (f.empty()) {
                continue;       /* deleted since SCAN saw it */
            }

            std::string status = effective_status(f, now);

            bool status_ok = status == want_status;
            if (want_status == "expiring") {
                uint64_t e = 0;
                status_ok = status == "active"
                            && parse_uint(field_value(f, "expires_at"),
                                          UINT64_MAX / 2, &e)
                            && e != 0
                            && static_cast<int64_t>(e) - now <= within;
            }

            if ((args.has("owner") && field_value(f, "owner")
                                          != args.get("owner"))
                || (args.has("plan") && field_value(f, "plan")
                                            != args.get("plan"))
                || (args.has("status") && !status_ok))
            {
                continue;
            }

            std::string hex = name.substr(prefix.size());
            std::string id = record_id(hex, f);
            shown++;

            if (json) {
                std::cout << (shown > 1 ? ",\n" : "\n") << "{\"id\":"
                          << json_quote(id) << ",\"hash\":" << json_quote(hex)
                          << ",\"fields\":" << fields_json(ordered(f));
                if (unused > 0) {
                    std::cout << ",\"last_used\":"
                              << (last_used < 0
                                      ? std::string("null")
                                      : std::to_string(last_used));
                }
                std::cout << "}";
                continue;
            }

            std::string exp = field_value(f, "expires_at");
            uint64_t e = 0;
            if (exp.empty() || (parse_uint(exp, UINT64_MAX / 2, &e)
                                && e == 0))
            {
                exp = "never";
            } else if (parse_uint(exp, UINT64_MAX / 2, &e)) {
                exp = iso8601(static_cast<int64_t>(e))
                      + (static_cast<int64_t>(e) <= now ? " (expired)" : "");
            } else {
                exp = printable(exp);
            }

            auto col = [](const std::string &v) {
                return v.empty() ? std::string("-") : printable(v);
            };

            std::cout << col(id) << '\t' << status << '\t'
                      << col(field_value(f, "owner")) << '\t'
                      << col(field_value(f, "plan")) << '\t' << exp << '\t'
                      << hex;
            if (unused > 0) {
                std::cout << '\t' << (last_used < 0 ? std::string("never")
                                                     : iso8601(last_used));
            }
            std::cout << '\n';
        }

        batch.clear();
    };

    /* one server, or every master of a cluster, each with its own cursor */
    const size_t nodes = r.scan_nodes();

    for (size_t node = 0; node < nodes; node++) {
        std::string cursor = "0";

        do {
            Reply rep = r.cmd_on(node, {"SCAN", cursor, "MATCH", pattern,
                                        "COUNT", std::to_string(page)});

            if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2
                || rep->element[1]->type != REDIS_REPLY_ARRAY)
            {
                fail(kExitRedis, "redis: SCAN: unexpected reply");
            }

            cursor = reply_string(rep->element[0]);
            const redisReply *names = rep->element[1];

            for (size_t i = 0; i < names->elements; i++) {
                std::string name = reply_string(names->element[i]);

                unsigned char hash[AK_HASH_LEN];
                if (!ak::redis_parse_record_name(prefix, name, hash)) {
                    continue;       /* id lookups, usage counters, others' */
                }

                if (seen.insert(name).second) {
                    batch.push_back(std::move(name));
                }
            }

            if (batch.size() >= page) {
                flush();
            }

        } while (cursor != "0");
    }

    flush();

    if (json) {
        std::cout << (shown ? "\n]\n" : "]\n");
    }

    flush_stdout_or_fail("list");
    note(std::to_string(shown) + (shown == 1 ? " key" : " keys"));
    return kExitOk;
}


/* ------------------------------------------------------------------ */
/* usage                                                               */

int cmd_usage(Context &ctx, const Args &args)
{
    expect_args(args, 1, 1, "KEY or ID");

    uint64_t ndays = 30;
    if (args.has("days")
        && (!parse_uint(args.get("days"), 92, &ndays) || ndays == 0))
    {
        usage_error("--days " + quoted(args.get("days"))
                    + ": expected 1 to 92 (the module keeps 92 days)");
    }

    Target t = resolve_arg(ctx, args);
    Client &r = ctx.redis();
    Fields f = read_record(r, ctx.record_key(t.hex));
    if (f.empty()) {
        fail(kExitNotFound, "no such key or id (deleted meanwhile)");
    }

    const int64_t now = unix_now();
    std::string id = record_id(t.hex, f);
    std::string quota = field_value(f, "quota");

    /* the counters are the identity's (kept across rotations) */
    std::string counters_hex = field_value(f, "identity");
    if (!is_hex64(counters_hex)) {
        counters_hex = t.hex;
    }

    /* N/hour, N/day, N/month */
    uint64_t limit = 0;
    std::string qperiod;
    size_t slash = quota.find('/');
    if (slash != std::string::npos
        && parse_uint(quota.substr(0, slash), UINT64_MAX / 2, &limit))
    {
        qperiod = quota.substr(slash + 1);
        if (qperiod != "hour" && qperiod != "day" && qperiod != "month") {
            qperiod.clear();
        }
    }

    struct Win {
        std::string period;
        int64_t start, end;
        uint64_t used;
    };
    std::vector<Win> wins;
    Argv mget{"MGET"};

    for (const char *p : {"hour", "day", "month"}) {
        Win w{p, 0, 0, 0};
        if (!quota_window(p, now, &w.start, &w.end)) {
            fail(kExitInternal, "cannot compute the quota window");
        }
        mget.push_back(ctx.usage_key(counters_hex, p, w.start));
        wins.push_back(w);
    }

    Reply rep = r.cmd(mget);
    for (size_t i = 0; i < wins.size() && i < rep->elements; i++) {
        uint64_t v = 0;
        if (rep->element[i]->type == REDIS_REPLY_STRING) {
            parse_uint(reply_string(rep->element[i]), UINT64_MAX, &v);
        }
        wins[i].used = v;
    }

    const Win *cur = nullptr;
    for (const Win &w : wins) {
        if (w.period == qperiod) {
            cur = &w;
        }
    }

    /* the requests per UTC day and the last use (the module's usage flush),
     * newest day first, pipelined (one slot: the names share a hash tag) */

    struct Day {
        int64_t start;
        uint64_t counts[AK_USAGE_NCLASSES];
    };
    std::vector<Day> days;
    const int64_t today = now - now % 86400;

    for (uint64_t i = 0; i < ndays; i++) {
        Day d{today - static_cast<int64_t>(i) * 86400, {}};
        r.append({"HGETALL", ctx.requests_key(counters_hex, d.start)});
        days.push_back(d);
    }
    r.append({"GET", ctx.last_used_key(counters_hex)});

    for (Day &d : days) {
        Reply h = r.next();
        for (const Field &x : reply_to_fields(h.get())) {
            for (unsigned c = 0; c < AK_USAGE_NCLASSES; c++) {
                if (x.first == ak_usage_class_name(c)) {
                    parse_uint(x.second, UINT64_MAX / 2, &d.counts[c]);
                }
            }
        }
    }
    Reply lu = r.next();
    const int64_t last_used = parse_last_used(lu.get());

    if (args.has("json")) {
        std::cout << "{\"id\":" << json_quote(id) << ",\"hash\":"
                  << json_quote(t.hex) << ",\"quota\":"
                  << (quota.empty() ? "null" : json_quote(quota));
        if (cur) {
            uint64_t left = cur->used >= limit ? 0 : limit - cur->used;
            std::cout << ",\"limit\":" << limit << ",\"period\":"
                      << json_quote(cur->period) << ",\"used\":" << cur->used
                      << ",\"remaining\":" << left << ",\"window_start\":"
                      << cur->start << ",\"window_end\":" << cur->end;
        }
        std::cout << ",\"windows\":{";
        for (size_t i = 0; i < wins.size(); i++) {
            std::cout << (i ? "," : "") << json_quote(wins[i].period)
                      << ":{\"start\":" << wins[i].start << ",\"end\":"
                      << wins[i].end << ",\"used\":" << wins[i].used << "}";
        }
        std::cout << "},\"last_used\":"
                  << (last_used < 0 ? std::string("null")
                                    : std::to_string(last_used))
                  << ",\"requests\":[";
        for (size_t i = 0; i < days.size(); i++) {
            std::cout << (i ? "," : "") << "{\"day\":"
                      << json_quote(iso8601(days[i].start).substr(0, 10))
                      << ",\"start\":" << days[i].start;
            for (unsigned c = 0; c < AK_USAGE_NCLASSES; c++) {
                std::cout << ",\"" << ak_usage_class_name(c) << "\":"
                          << days[i].counts[c];
            }
            std::cout << "}";
        }
        std::cout << "]}\n";
        flush_stdout_or_fail("usage");
        return kExitOk;
    }

    std::cout << "id         " << printable(id) << '\n'
              << "hash       " << t.hex << '\n'
              << "last used  " << last_used_text(last_used, now) << '\n'
              << '\n'
              << "requests per UTC day, last " << ndays
              << " (written by nginx every usage_flush):\n"
              << "  day          allowed  denied_status  denied_policy  "
                 "denied_limit\n";

    uint64_t total[AK_USAGE_NCLASSES] = {};
    for (const Day &d : days) {
        char row[128];
        std::snprintf(row, sizeof(row), "  %s  %7llu  %13llu  %13llu  %12llu\n",
                      iso8601(d.start).substr(0, 10).c_str(),
                      static_cast<unsigned long long>(d.counts[0]),
                      static_cast<unsigned long long>(d.counts[1]),
                      static_cast<unsigned long long>(d.counts[2]),
                      static_cast<unsigned long long>(d.counts[3]));
        std::cout << row;
        for (unsigned c = 0; c < AK_USAGE_NCLASSES; c++) {
            total[c] += d.counts[c];
        }
    }
    {
        char row[128];
        std::snprintf(row, sizeof(row), "  %-10s  %7llu  %13llu  %13llu  %12llu\n",
                      "total", static_cast<unsigned long long>(total[0]),
                      static_cast<unsigned long long>(total[1]),
                      static_cast<unsigned long long>(total[2]),
                      static_cast<unsigned long long>(total[3]));
        std::cout << row << '\n';
    }

    std::cout << "quota state (counts taken by nginx nodes, leases "
                 "included; not requests):\n";

    if (cur) {
        uint64_t left = cur->used >= limit ? 0 : limit - cur->used;
        std::cout << "quota      " << printable(quota) << '\n'
                  << "window     " << iso8601(cur->start) << " .. "
                  << iso8601(cur->end) << '\n'
                  << "used       " << cur->used << '\n'
                  << "remaining  " << left << '\n';
    } else if (quota.empty()) {
        std::cout << "quota      none\n";
    } else {
        std::cout << "quota      " << printable(quota) << " (malformed)\n";
    }

    for (const Win &w : wins) {
        std::cout << "counter    " << w.period
                  << std::string(6 - w.period.size(), ' ') << w.used
                  << " since " << iso8601(w.start) << '\n';
    }

    flush_stdout_or_fail("usage");
    return kExitOk;
}


/* ------------------------------------------------------------------ */
/* delete                                                              */

int cmd_delete(Context &ctx, const Args &args)
{
    expect_args(args, 1, 1, "KEY or ID");

    Target t = resolve_arg(ctx, args, true);
    Client &r = ctx.redis();
    ctx.check_marker();
    const std::string rec_key = ctx.record_key(t.hex);
    std::string id;
    bool had_record = false;
    Fields deleted;

    Reply exec = transact(r, [&](Client &rr)
                                 -> std::optional<std::vector<Argv>> {
        rr.cmd({"WATCH", rec_key});
        Fields f = read_record(rr, rec_key);
        had_record = !f.empty();
        deleted = f;
        id = had_record ? record_id(t.hex, f) : t.id_arg;

        /* the id lookups that point at this record */
        std::vector<std::string> ids{id, t.hex.substr(0, AK_ID_DEFAULT_LEN)};
        if (!t.id_arg.empty()) {
            ids.push_back(t.id_arg);
        }
        std::sort(ids.begin(), ids.end());
        ids.erase(std::unique(ids.begin(), ids.end()), ids.end());

        Argv watch{"WATCH"};
        for (const std::string &i : ids) {
            watch.push_back(ctx.id_key(i));
        }
        rr.cmd(watch);

        std::vector<Argv> ops;
        if (had_record) {
            ops.push_back({"DEL", rec_key});
        }
        for (const std::string &i : ids) {
            Reply g = rr.cmd({"GET", ctx.id_key(i)});
            if (reply_string(g.get()) == t.hex) {
                ops.push_back({"DEL", ctx.id_key(i)});
            }
        }
        if (ops.empty()) {
            return std::nullopt;
        }
        ops.push_back({"PUBLISH", ctx.channel(), "update " + t.hex});
        return ops;
    });

    if (!exec) {
        fail(kExitNotFound, "no such key or id (deleted meanwhile)");
    }

    check_published(ctx, exec, exec->elements - 1);
    audit(ctx, "delete", id, t.hex, deleted, Fields());

    if (had_record) {
        note("deleted key id " + quoted(id) + ", hash " + t.hex);
    } else {
        note("removed id " + quoted(id) + ", whose record was already gone");
    }
    if (args.has("json")) {
        std::cout << "{\"id\":" << json_quote(id) << ",\"hash\":"
                  << json_quote(t.hex) << ",\"record_deleted\":"
                  << (had_record ? "true" : "false") << "}\n";
        flush_stdout_or_fail("delete");
    }
    return kExitOk;
}

} // namespace apikeyctl


/* ------------------------------------------------------------------ */
/* lifecycle helpers shared with lifecycle.cpp                         */

namespace apikeyctl {

std::string effective_status(const Fields &f, int64_t now)
{
    std::string status = field_value(f, "status");
    if (status == "revoked" || status == "disabled") {
        return status;
    }

    uint64_t alias = 0, exp = 0;
    bool is_alias = parse_uint(field_value(f, "alias_until"), UINT64_MAX / 2,
                               &alias) && alias != 0;
    bool expires = parse_uint(field_value(f, "expires_at"), UINT64_MAX / 2,
                              &exp) && exp != 0;

    if (is_alias && static_cast<int64_t>(alias) <= now) {
        return "rotated";
    }
    if (expires && static_cast<int64_t>(exp) <= now) {
        return "expired";
    }
    if (is_alias) {
        return "alias";
    }
    return status.empty() || status == "active" ? "active" : status;
}


/* one line of stdin (without "\n" / "\r\n"), at most 4096 bytes: false at
 * the end; *too_long when the line was longer (then skipped) */
bool read_line(std::string *line, bool *too_long)
{
    line->clear();
    *too_long = false;
    int c;
    bool any = false;

    while ((c = std::getchar()) != EOF) {
        any = true;
        if (c == '\n') {
            break;
        }
        if (line->size() < 4096) {
            line->push_back(static_cast<char>(c));
        } else {
            *too_long = true;
        }
    }
    if (!line->empty() && line->back() == '\r') {
        line->pop_back();
    }
    if (*too_long) {
        wipe(*line);
        line->clear();
    }
    return any;
}


/* ------------------------------------------------------------------ */
/* a flat JSON object: {"name": "text" | number | true | false | null}  */

static void skip_ws(const std::string &s, size_t &i)
{
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r'
                            || s[i] == '\n')) {
        i++;
    }
}


static void put_utf8(std::string &out, unsigned cp)
{
    if (cp < 0x80) {
        out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
        out.push_back(static_cast<char>(0xc0 | (cp >> 6)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    } else if (cp < 0x10000) {
        out.push_back(static_cast<char>(0xe0 | (cp >> 12)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    } else {
        out.push_back(static_cast<char>(0xf0 | (cp >> 18)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    }
}


static bool hex4(const std::string &s, size_t i, unsigned *v)
{
    if (i + 4 > s.size()) {
        return false;
    }
    *v = 0;
    for (size_t k = i; k < i + 4; k++) {
        char c = s[k];
        unsigned d = c >= '0' && c <= '9' ? unsigned(c - '0')
                     : c >= 'a' && c <= 'f' ? unsigned(c - 'a' + 10)
                     : c >= 'A' && c <= 'F' ? unsigned(c - 'A' + 10) : 16;
        if (d == 16) {
            return false;
        }
        *v = *v * 16 + d;
    }
    return true;
}


static bool json_string(const std::string &s, size_t &i, std::string *out)
{
    if (i >= s.size() || s[i] != '"') {
        return false;
    }
    i++;
    out->clear();
    while (i < s.size() && s[i] != '"') {
        unsigned char c = static_cast<unsigned char>(s[i]);
        if (c < 0x20) {
            return false;
        }
        if (c != '\\') {
            out->push_back(static_cast<char>(c));
            i++;
            continue;
        }
        if (++i >= s.size()) {
            return false;
        }
        char e = s[i++];
        switch (e) {
        case '"': out->push_back('"'); break;
        case '\\': out->push_back('\\'); break;
        case '/': out->push_back('/'); break;
        case 'b': out->push_back('\b'); break;
        case 'f': out->push_back('\f'); break;
        case 'n': out->push_back('\n'); break;
        case 'r': out->push_back('\r'); break;
        case 't': out->push_back('\t'); break;
        case 'u': {
            unsigned cp, lo;
            if (!hex4(s, i, &cp)) {
                return false;
            }
            i += 4;
            if (cp >= 0xd800 && cp < 0xdc00) {
                if (i + 6 > s.size() || s[i] != '\\' || s[i + 1] != 'u'
                    || !hex4(s, i + 2, &lo) || lo < 0xdc00 || lo >= 0xe000)
                {
                    return false;
                }
                i += 6;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            } else if (cp >= 0xdc00 && cp < 0xe000) {
                return false;
            }
            put_utf8(*out, cp);
            break;
        }
        default:
            return false;
        }
    }
    if (i >= s.size()) {
        return false;
    }
    i++;
    return true;
}


bool parse_flat_json(const std::string &s, Fields *out, std::string *why)
{
    size_t i = 0;
    out->clear();
    skip_ws(s, i);
    if (i >= s.size() || s[i] != '{') {
        *why = "expected a JSON object";
        return false;
    }
    i++;
    skip_ws(s, i);
    if (i < s.size() && s[i] == '}') {
        i++;
    } else {
        for (;;) {
            std::string name, value;
            skip_ws(s, i);
            if (!json_string(s, i, &name)) {
                *why = "expected a field name in double quotes";
                return false;
            }
            skip_ws(s, i);
            if (i >= s.size() || s[i] != ':') {
                *why = "expected ':' after " + quoted(name);
                return false;
            }
            i++;
            skip_ws(s, i);
            if (i < s.size() && s[i] == '"') {
                if (!json_string(s, i, &value)) {
                    *why = "bad string for " + quoted(name);
                    return false;
                }
            } else {
                size_t st = i;
                while (i < s.size() && s[i] != ',' && s[i] != '}'
                       && s[i] != ' ' && s[i] != '\t') {
                    i++;
                }
                value = s.substr(st, i - st);
                if (value == "null") {
                    value.clear();
                } else if (value != "true" && value != "false") {
                    uint64_t n;
                    if (!parse_uint(value, UINT64_MAX / 2, &n)) {
                        *why = "the value of " + quoted(name) + " is not a "
                               "string, a whole number, true, false or null";
                        return false;
                    }
                }
            }
            for (const Field &f : *out) {
                if (f.first == name) {
                    *why = "field " + quoted(name) + " given twice";
                    return false;
                }
            }
            out->emplace_back(name, value);
            skip_ws(s, i);
            if (i < s.size() && s[i] == ',') {
                i++;
                continue;
            }
            if (i < s.size() && s[i] == '}') {
                i++;
                break;
            }
            *why = "expected ',' or '}'";
            return false;
        }
    }
    skip_ws(s, i);
    if (i != s.size()) {
        *why = "text after the object";
        return false;
    }
    return true;
}


/* ------------------------------------------------------------------ */
/* import                                                              */

/* create's field options as record fields, checked */
static Fields option_fields(const Args &args, int64_t now)
{
    Fields attrs;

    auto text = [&](const char *opt, const char *field) {
        if (args.has(opt + 2) && !args.get(opt + 2).empty()) {
            std::string v = args.get(opt + 2);
            check_field(opt, field, v);
            attrs.emplace_back(field, v);
        }
    };

    text("--owner", "owner");
    text("--plan", "plan");
    if (args.has("expires")) {
        int64_t t = parse_expires_option(args.get("expires"), now,
                                         "--expires");
        if (t != 0) {
            attrs.emplace_back("expires_at", std::to_string(t));
        }
    }
    if (args.has("scopes")) {
        std::string v = normalize_scopes(args.get("scopes"));
        if (!v.empty()) {
            check_field("--scopes", "scopes", v);
            attrs.emplace_back("scopes", v);
        }
    }
    text("--ips", "ips");
    text("--referrers", "referrers");
    text("--rate", "rate");
    text("--burst", "burst");
    text("--quota", "quota");
    if (args.has("burst") && !args.has("rate")) {
        usage_error("--burst needs --rate");
    }
    return attrs;
}


int cmd_import(Context &ctx, const Args &args)
{
    expect_args(args, 0, 0, "");

    const int64_t now = unix_now();
    const Fields base = option_fields(args, now);
    const bool jsonl = args.has("jsonl");
    Client &r = ctx.redis();
    ctx.check_marker();

    uint64_t lineno = 0, imported = 0, skipped = 0;
    std::string json_out;
    SecretString line;

    for (;;) {
        std::string l;
        bool too_long;
        if (!read_line(&l, &too_long)) {
            break;
        }
        line = std::move(l);
        lineno++;

        auto skip = [&](const std::string &why) {
            skipped++;
            note("line " + std::to_string(lineno) + " skipped: " + why);
        };

        if (too_long) {
            skip("longer than 4096 bytes");
            continue;
        }
        if (trim(line.str()).empty()) {
            continue;
        }

        Fields rec_fields = base;
        SecretString key;
        std::string id;

        if (jsonl) {
            Fields obj;
            std::string why;
            if (!parse_flat_json(line.str(), &obj, &why)) {
                skip(why);
                continue;
            }
            bool bad = false;
            for (Field &f : obj) {
                if (f.first == "key") {
                    key = f.second;
                    wipe(f.second);
                    continue;
                }
                if (f.first == "expires") {
                    f.first = "expires_at";
                }
                if (!is_module_field(f.first) || f.first == "identity"
                    || f.first == "alias_until")
                {
                    skip("unknown field " + quoted(f.first));
                    bad = true;
                    break;
                }
                if (f.first == "expires_at" && !f.second.empty()) {
                    int64_t t;
                    if (!parse_time(f.second, now, &t, &why)) {
                        skip("expires_at " + quoted(f.second) + ": " + why);
                        bad = true;
                        break;
                    }
                    f.second = t ? std::to_string(t) : std::string();
                }
                if (f.first == "scopes") {
                    f.second = normalize_scopes(f.second);
                }
                if (f.first == "id") {
                    id = f.second;
                    continue;
                }
                /* the line's value overrides the option's */
                Fields merged;
                for (const Field &b : rec_fields) {
                    if (b.first != f.first) {
                        merged.push_back(b);
                    }
                }
                if (!f.second.empty()) {
                    merged.push_back(f);
                }
                rec_fields = merged;
            }
            if (bad) {
                continue;
            }
            if (key.empty()) {
                skip("no \"key\"");
                continue;
            }
        } else {
            key = trim(line.str());
        }

        if (!key_is_any(key.str())) {
            skip("not a key (1 to 256 printable ASCII characters, no "
                 "blanks)");
            continue;
        }

        const std::string hex = ctx.hasher().hex(key.str());
        if (id.empty()) {
            id = hex.substr(0, AK_ID_DEFAULT_LEN);
        }

        Fields rec{{"id", id}};
        bool has_status = !field_value(rec_fields, "status").empty();
        rec.insert(rec.end(), rec_fields.begin(), rec_fields.end());
        if (!has_status) {
            rec.emplace_back("status", "active");
        }
        rec.emplace_back("created_at", std::to_string(now));
        rec.emplace_back("imported_at", std::to_string(now));

        std::string why = record_problem(hex, rec);
        if (!why.empty()) {
            skip(why);
            continue;
        }

        const std::string rec_key = ctx.record_key(hex);
        const std::string id_key = ctx.id_key(id);
        bool id_taken = false, exists = false;

        Reply exec = transact(r, [&](Client &rr)
                                     -> std::optional<std::vector<Argv>> {
            rr.cmd({"WATCH", rec_key, id_key});
            rr.append({"EXISTS", id_key});
            rr.append({"EXISTS", rec_key});
            Reply a = rr.next(), b = rr.next();
            check_reply(a.get(), "EXISTS");
            check_reply(b.get(), "EXISTS");
            id_taken = a->integer > 0;
            exists = b->integer > 0;
            if (id_taken || exists) {
                return std::nullopt;
            }
            return std::vector<Argv>{{"SET", id_key, hex},
                                     hset_argv(rec_key, rec),
                                     {"PUBLISH", ctx.channel(),
                                      "update " + hex}};
        });

        if (exists) {
            skip("the key is stored already (hash " + hex + ")");
            continue;
        }
        if (id_taken) {
            skip("the id " + quoted(id) + " is in use");
            continue;
        }
        if (!exec) {
            skip("transaction given up");
            continue;
        }

        audit(ctx, "import", id, hex, Fields(), rec);
        imported++;
        if (args.has("json")) {
            json_out += std::string(json_out.empty() ? "" : ",")
                        + "{\"line\":" + std::to_string(lineno) + ",\"id\":"
                        + json_quote(id) + ",\"hash\":" + json_quote(hex)
                        + "}";
        } else {
            std::cout << "imported " << printable(id) << ' ' << hex << '\n';
        }
    }

    if (args.has("json")) {
        std::cout << "{\"imported\":[" << json_out << "],\"skipped\":"
                  << skipped << "}\n";
    }
    flush_stdout_or_fail("import");
    note(std::to_string(imported) + " imported, " + std::to_string(skipped)
         + " skipped");
    return skipped ? kExitUsage : kExitOk;
}


/* ------------------------------------------------------------------ */
/* leaked                                                              */

int cmd_leaked(Context &ctx, const Args &args)
{
    expect_args(args, 0, 0, "");

    Client &r = ctx.redis();
    ctx.check_marker();

    uint64_t not_keys = 0, already = 0;
    std::string json_out;
    std::set<std::string> done;
    std::vector<std::pair<std::string, std::string>> revoked;
    SecretString line;

    for (;;) {
        std::string l;
        bool too_long;
        if (!read_line(&l, &too_long)) {
            break;
        }
        line = trim(l);
        wipe(l);
        if (too_long) {
            not_keys++;
            continue;
        }
        if (line.empty()) {
            continue;
        }
        if (!key_is_any(line.str())) {
            not_keys++;
            continue;
        }

        const std::string hex = ctx.hasher().hex(line.str());
        if (done.count(hex)) {
            continue;               /* the same finding twice */
        }
        done.insert(hex);

        Fields f = read_record(r, ctx.record_key(hex));
        if (f.empty()) {
            not_keys++;
            continue;
        }
        if (field_value(f, "status") == "revoked") {
            already++;
            continue;
        }

        std::string id, was;
        Fields before, after;
        if (!revoke_record(ctx, hex, "leaked", &id, &was, &before, &after)) {
            not_keys++;             /* deleted meanwhile */
            continue;
        }
        audit(ctx, "leaked", id, hex, before, after, "leaked");
        revoked.emplace_back(id, hex);

        if (!args.has("json")) {
            std::cout << "revoked " << printable(id) << ' ' << hex << '\n';
        }
    }

    if (args.has("json")) {
        std::cout << "{\"revoked\":[";
        for (size_t i = 0; i < revoked.size(); i++) {
            std::cout << (i ? "," : "") << "{\"id\":"
                      << json_quote(revoked[i].first) << ",\"hash\":"
                      << json_quote(revoked[i].second) << "}";
        }
        std::cout << "],\"already\":" << already << ",\"not_keys\":"
                  << not_keys << "}\n";
    }
    flush_stdout_or_fail("leaked");
    note(std::to_string(revoked.size()) + " revoked, "
         + std::to_string(already) + " revoked already, "
         + std::to_string(not_keys) + " not live keys");
    return revoked.empty() ? kExitOk : kExitLeaked;
}

} // namespace apikeyctl
