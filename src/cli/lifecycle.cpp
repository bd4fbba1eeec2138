/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * apikeyctl: the key lifecycle around the record: the hash mode marker
 * ({prefix}meta), the audit trail ({prefix}audit) and its reader.
 */

#include "commands.hpp"

#include "akcore.hpp"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <set>

namespace apikeyctl {

/* ------------------------------------------------------------------ */
/* the hash mode marker                                                */

void Context::check_marker()
{
    if (marker_checked_) {
        return;
    }

    Client &r = redis();
    const std::string name = ak::redis_marker_name(prefix_);
    const std::string check = hasher_->hex(AK_MARKER_LABEL);

    auto read = [&](std::string *mode, std::string *got) {
        Reply all = r.cmd({"HGETALL", name});
        mode->clear();
        got->clear();
        for (size_t i = 0; all->type == REDIS_REPLY_ARRAY
                           && i + 1 < all->elements; i += 2) {
            std::string f = reply_string(all->element[i]);
            if (f == "hash") {
                *mode = reply_string(all->element[i + 1]);
            } else if (f == "check") {
                *got = reply_string(all->element[i + 1]);
            }
        }
    };

    std::string mode, got;
    read(&mode, &got);

    if (mode.empty() || got.empty()) {
        /* the first write: claim it (HSETNX: a concurrent writer's
         * claim wins, and is compared below) */
        r.append({"HSETNX", name, "hash", hash_mode_});
        r.append({"HSETNX", name, "check", check});
        Reply a = r.next(), b = r.next();
        check_reply(a.get(), "HSETNX");
        check_reply(b.get(), "HSETNX");
        if (a->integer == 1 && b->integer == 1) {
            r.cmd({"HSET", name, "written_by", "apikeyctl",
                   "created_at", std::to_string(unix_now())});
        }
        read(&mode, &got);
    }

    if (mode != hash_mode_) {
        usage_error("the keys under prefix " + quoted(prefix_) + " are "
                    "hashed with " + quoted(mode) + " (" + name + "), "
                    "not with --hash " + hash_mode_ + ": nothing written; "
                    "give the --hash (and --secret-file) of "
                    "api_key_hash");
    }
    if (got != check) {
        usage_error("the keys under prefix " + quoted(prefix_) + " are "
                    "hashed with " + hash_mode_ + " and another secret "
                    "(its check in " + name + " differs): nothing written; "
                    "give the --secret-file of api_key_hash "
                    "secret_file=");
    }

    marker_checked_ = true;
}


/* ------------------------------------------------------------------ */
/* the audit trail                                                     */

static std::string json_or_null(const std::string *v)
{
    return v ? json_quote(*v) : std::string("null");
}


void audit(Context &ctx, const std::string &command, const std::string &id,
           const std::string &hex, const Fields &before, const Fields &after,
           const std::string &reason)
{
    std::set<std::string> names;
    for (const Field &f : before) {
        names.insert(f.first);
    }
    for (const Field &f : after) {
        names.insert(f.first);
    }

    std::string changes = "{";
    for (const std::string &n : names) {
        bool had, has;
        std::string o = field_value(before, n, &had);
        std::string v = field_value(after, n, &has);
        had = had && !o.empty();
        has = has && !v.empty();
        if (had == has && o == v) {
            continue;
        }
        changes += (changes.size() > 1 ? "," : "") + json_quote(n) + ":["
                   + json_or_null(had ? &o : nullptr) + ","
                   + json_or_null(has ? &v : nullptr) + "]";
    }
    changes += "}";

    Argv a{"XADD", ak::redis_audit_name(ctx.prefix()), "MAXLEN", "~",
           std::to_string(kAuditMaxLen), "*",
           "time", std::to_string(unix_now()),
           "actor", ctx.actor(),
           "command", command,
           "id", id,
           "hash", hex,
           "changes", changes};
    if (!reason.empty()) {
        a.push_back("reason");
        a.push_back(reason);
    }

    Reply rep;
    try {
        rep = ctx.redis().cmd_raw(a);
    } catch (const Error &e) {
        note(std::string("warning: the change is made, but its audit entry "
                         "could not be written: ") + e.what());
        return;
    }
    if (reply_is_error(rep.get())) {
        note("warning: the change is made, but its audit entry could not "
             "be written: " + printable(reply_string(rep.get())));
    }
}


/* an entry's fields, in the stream's order */
struct AuditEntry {
    std::string stream_id;
    Fields f;
};


int cmd_audit(Context &ctx, const Args &args)
{
    if (args.pos.size() > 1) {
        usage_error("audit: unexpected argument " + quoted(args.pos[1])
                    + " (see apikeyctl audit --help)");
    }

    const int64_t now = unix_now();
    std::string start = "-";
    if (args.has("since")) {
        /* a duration (7d) means that long ago; else a point in time */
        int64_t t, d;
        std::string why;
        const std::string v = args.get("since");
        bool digits = !v.empty()
                      && v.find_first_not_of("0123456789") == std::string::npos;
        if (!digits && parse_duration(v, &d)) {
            t = now - d;
        } else if (!parse_time(v, now, &t, &why)) {
            usage_error("--since " + quoted(v) + ": " + why);
        }
        start = std::to_string(t < 0 ? 0 : t * 1000);
    }

    /* KEY: its id and hashes (the key may be gone: an id or hash given
     * as it is matches too) */
    std::set<std::string> want_id, want_hash;
    bool filter = !args.pos.empty();
    if (filter) {
        SecretString arg(args.pos[0] == "-" ? read_stdin_line()
                                            : args.pos[0]);
        const std::string &a = arg.str();
        if (is_hex64(a)) {
            want_hash.insert(a);
        } else if (key_is_checksum(a)) {
            want_hash.insert(ctx.hasher().hex(a));
        } else {
            want_id.insert(a);
        }
    }

    Client &r = ctx.redis();
    const std::string name = ak::redis_audit_name(ctx.prefix());
    std::vector<AuditEntry> out;

    for (;;) {
        Reply rep = r.cmd({"XRANGE", name, start, "+", "COUNT", "1000"});
        if (rep->type != REDIS_REPLY_ARRAY) {
            fail(kExitRedis, "redis: XRANGE: unexpected reply");
        }
        if (rep->elements == 0) {
            break;
        }
        for (size_t i = 0; i < rep->elements; i++) {
            const redisReply *e = rep->element[i];
            if (e->type != REDIS_REPLY_ARRAY || e->elements != 2) {
                continue;
            }
            AuditEntry ae;
            ae.stream_id = reply_string(e->element[0]);
            const redisReply *kv = e->element[1];
            for (size_t k = 0; kv->type == REDIS_REPLY_ARRAY
                               && k + 1 < kv->elements; k += 2) {
                ae.f.emplace_back(reply_string(kv->element[k]),
                                  reply_string(kv->element[k + 1]));
            }
            if (filter && !want_id.count(field_value(ae.f, "id"))
                && !want_hash.count(field_value(ae.f, "hash")))
            {
                continue;
            }
            out.push_back(std::move(ae));
        }
        start = "(" + reply_string(rep->element[rep->elements - 1]
                                       ->element[0]);
    }

    if (args.has("json")) {
        std::cout << "[";
        for (size_t i = 0; i < out.size(); i++) {
            std::cout << (i ? ",\n" : "\n") << "{\"entry\":"
                      << json_quote(out[i].stream_id);
            for (const Field &f : out[i].f) {
                std::cout << "," << json_quote(f.first) << ":";
                if (f.first == "changes" && !f.second.empty()
                    && f.second[0] == '{')
                {
                    std::cout << f.second;      /* written as JSON */
                } else if (f.first == "time") {
                    uint64_t t;
                    std::cout << (parse_uint(f.second, UINT64_MAX / 2, &t)
                                      ? std::to_string(t)
                                      : json_quote(f.second));
                } else {
                    std::cout << json_quote(f.second);
                }
            }
            std::cout << "}";
        }
        std::cout << (out.empty() ? "]\n" : "\n]\n");
    } else {
        for (const AuditEntry &e : out) {
            uint64_t t = 0;
            parse_uint(field_value(e.f, "time"), UINT64_MAX / 2, &t);
            std::string reason = field_value(e.f, "reason");
            std::cout << iso8601(static_cast<int64_t>(t)) << '\t'
                      << printable(field_value(e.f, "actor")) << '\t'
                      << printable(field_value(e.f, "command")) << '\t'
                      << printable(field_value(e.f, "id")) << '\t'
                      << printable(field_value(e.f, "changes"))
                      << (reason.empty() ? "" : "\treason: "
                                                + printable(reason))
                      << '\n';
        }
    }

    std::cout.flush();
    if (!std::cout) {
        fail(kExitInternal, "cannot write to stdout: audit");
    }
    note(std::to_string(out.size())
         + (out.size() == 1 ? " entry" : " entries"));
    return kExitOk;
}


/* ------------------------------------------------------------------ */
/* report --prometheus                                                 */

/* a Prometheus label value: \ " and newline escaped */
static std::string label_value(const std::string &v)
{
    std::string out;
    for (char c : v) {
        if (c == '\\' || c == '"') {
            out.push_back('\\');
            out.push_back(c);
        } else if (c == '\n') {
            out += "\\n";
        } else {
            out.push_back(c);
        }
    }
    return out;
}


static constexpr size_t kReportPlansMax = 100;


int cmd_report(Context &ctx, const Args &args)
{
    if (!args.has("prometheus")) {
        usage_error("report: give --prometheus [FILE] (the only format)");
    }
    if (args.pos.size() > 1) {
        usage_error("report: unexpected argument " + quoted(args.pos[1]));
    }
    const std::string file = args.pos.empty() ? "-" : args.pos[0];

    const int64_t now = unix_now();
    const std::string &prefix = ctx.prefix();
    const std::string pattern = ak::redis_records_pattern(prefix);
    Client &r = ctx.redis();

    /* status -> plan -> count; plans past kReportPlansMax count as other */
    std::map<std::string, std::map<std::string, uint64_t>> by;
    std::set<std::string> plans;
    uint64_t within7 = 0, within30 = 0, total = 0, unused90 = 0;
    std::set<std::string> seen;
    std::vector<std::string> batch;

    auto flush = [&]() {
        /* the active keys' usage names: their identity's, or their own */
        std::vector<std::string> active;

        for (const std::string &name : batch) {
            r.append({"HGETALL", name});
        }
        for (size_t k = 0; k < batch.size(); k++) {
            Reply rep = r.next();
            if (reply_is_error(rep.get()) || rep->type != REDIS_REPLY_ARRAY
                || rep->elements == 0)
            {
                continue;
            }
            Fields f;
            for (size_t i = 0; i + 1 < rep->elements; i += 2) {
                f.emplace_back(reply_string(rep->element[i]),
                               reply_string(rep->element[i + 1]));
            }
            std::string status = effective_status(f, now);
            std::string plan = field_value(f, "plan");
            if (!plans.count(plan)) {
                if (plans.size() >= kReportPlansMax) {
                    plan = "other";
                } else {
                    plans.insert(plan);
                }
            }
            by[status][plan]++;
            total++;

            if (status == "active") {
                std::string ident = field_value(f, "identity");
                active.push_back(is_hex64(ident)
                                     ? ident
                                     : batch[k].substr(prefix.size()));
            }

            uint64_t exp = 0;
            if (status == "active"
                && parse_uint(field_value(f, "expires_at"), UINT64_MAX / 2,
                              &exp) && exp != 0)
            {
                int64_t left = static_cast<int64_t>(exp) - now;
                within7 += left <= 7 * 86400;
                within30 += left <= 30 * 86400;
            }
        }

        /* the last use the module's usage flush wrote (api_key_zone
         * usage_flush=): none in 90 days counts as unused */
        for (const std::string &hex : active) {
            r.append({"GET", ctx.last_used_key(hex)});
        }
        for (size_t k = 0; k < active.size(); k++) {
            Reply lu = r.next();
            int64_t last = parse_last_used(lu.get());
            unused90 += last < 0 || now - last >= 90 * 86400;
        }

        batch.clear();
    };

    const size_t nodes = r.scan_nodes();
    for (size_t node = 0; node < nodes; node++) {
        std::string cursor = "0";
        do {
            Reply rep = r.cmd_on(node, {"SCAN", cursor, "MATCH", pattern,
                                        "COUNT", "1000"});
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
                if (ak::redis_parse_record_name(prefix, name, hash)
                    && seen.insert(name).second)
                {
                    batch.push_back(std::move(name));
                }
            }
            if (batch.size() >= 1000) {
                flush();
            }
        } while (cursor != "0");
    }
    flush();

    std::string out;
    out += "# HELP apikey_keys API keys in Redis by status and plan "
           "(apikeyctl report).\n"
           "# TYPE apikey_keys gauge\n";
    for (const auto &st : by) {
        for (const auto &pl : st.second) {
            out += "apikey_keys{status=\"" + label_value(st.first)
                   + "\",plan=\"" + label_value(pl.first) + "\"} "
                   + std::to_string(pl.second) + "\n";
        }
    }
    out += "# HELP apikey_keys_expiring Active API keys whose expires_at "
           "is within the window.\n"
           "# TYPE apikey_keys_expiring gauge\n"
           "apikey_keys_expiring{within=\"7d\"} " + std::to_string(within7)
           + "\napikey_keys_expiring{within=\"30d\"} "
           + std::to_string(within30) + "\n"
           "# HELP apikey_keys_unused Active API keys nginx has not seen "
           "for the window (no last use written by api_key_zone "
           "usage_flush).\n"
           "# TYPE apikey_keys_unused gauge\n"
           "apikey_keys_unused{for=\"90d\"} " + std::to_string(unused90)
           + "\n"
           "# HELP apikey_report_timestamp_seconds When apikeyctl report "
           "counted the keys.\n"
           "# TYPE apikey_report_timestamp_seconds gauge\n"
           "apikey_report_timestamp_seconds " + std::to_string(now) + "\n";

    if (file == "-") {
        std::cout << out;
        std::cout.flush();
        if (!std::cout) {
            fail(kExitInternal, "cannot write to stdout: report");
        }
    } else {
        /* written beside, then renamed: the collector never reads half */
        const std::string tmp = file + ".tmp";
        {
            std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
            f << out;
            f.flush();
            if (!f) {
                std::remove(tmp.c_str());
                fail(kExitUsage, "report: cannot write " + quoted(tmp));
            }
        }
        if (std::rename(tmp.c_str(), file.c_str()) != 0) {
            std::remove(tmp.c_str());
            fail(kExitUsage, "report: cannot rename " + quoted(tmp)
                             + " to " + quoted(file));
        }
    }

    note(std::to_string(total) + (total == 1 ? " key" : " keys")
         + " counted");
    return kExitOk;
}

} // namespace apikeyctl
